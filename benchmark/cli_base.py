"""What every ``bench`` command shares and that must stay cheap to import: the consoles and the
one-line error handling (``bench predict`` starts without the rest of the CLI; see cli_predict)."""

from __future__ import annotations

import functools
import logging

import typer
from rich.console import Console
from rich.logging import RichHandler

from .errors import BenchError, printable

console = Console()
err_console = Console(stderr=True)


def print_table(table) -> None:
    """Print a rich table; when stdout is not a terminal (a log file, a pipe, a test) at the table's
    natural width, so no cell - a run id, ``xgboost[n_estimators=30]/handcrafted36`` - is folded
    over lines at rich's default 80 columns (a terminal keeps its own width)."""
    if console.is_terminal:
        console.print(table)
        return
    from rich.measure import Measurement

    natural = Measurement.get(console, console.options.update(width=10_000), table).maximum
    # a console of its own: print(width=...) never goes beyond the console's width
    Console(file=console.file, width=max(console.width, natural), color_system=None).print(table)


def friendly_errors(command):
    """Turn expected failures into one line on stderr and exit code 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        logging.basicConfig(level=logging.WARNING, format="%(message)s",
                            handlers=[RichHandler(console=err_console, show_time=False, show_path=False)])
        try:
            return command(*args, **kwargs)
        except BenchError as exc:
            err_console.print(f"[bold red]error:[/] {printable(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except Exception as exc:  # a store failure deep inside MLflow (full disk, read-only): one line too
            from .store import explain

            known = explain(exc, kwargs.get("tracking_uri"))
            if known is None:
                raise
            err_console.print(f"[bold red]error:[/] {known}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (lifecycle.Terminated): runs are FAILED
            err_console.print(f"[bold red]stopped:[/] {exc or 'interrupted'}; runs in progress are marked FAILED",
                              highlight=False, soft_wrap=True)
            raise typer.Exit(143 if type(exc).__name__ == "Terminated" else 130) from None

    return wrapper
