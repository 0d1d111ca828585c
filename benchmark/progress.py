"""Progress of long loops that a terminal *and* a log file can read.

A rich bar redraws one line in place: on a terminal that is what a user wants, but redirected to
a file (``bench run ... > run.log 2>&1``, a batch job, CI) it prints nothing until the end, so a
12-minute extraction looks hung. :func:`progress` shows the bar on a terminal and otherwise
prints one plain line per finished chunk (every ``every_percent`` % of the items), with the rate
and the time left, on stderr.

Usage::

    with progress(len(items), "egemaps") as advance:
        for item in items:
            work(item)
            advance()
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO


def duration_text(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``: what a progress line says."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class LineProgress:
    """Plain lines: ``<description>: 27/535 (5%), 12 s elapsed, about 3 min 40 s left``."""

    def __init__(self, total: int, description: str, unit: str, stream: TextIO, every_percent: float):
        self.total, self.description, self.unit, self.stream = total, description, unit, stream
        self.step = max(1, math.ceil(total * every_percent / 100))
        self.done, self.start = 0, time.monotonic()

    def advance(self, count: int = 1) -> None:
        before, self.done = self.done, self.done + count
        if self.done // self.step > before // self.step or (self.done >= self.total > before):
            self.line()

    def line(self) -> None:
        elapsed = time.monotonic() - self.start
        text = f"{self.description}: {self.done}/{self.total} {self.unit} ({100 * self.done // max(1, self.total)}%), " \
               f"{duration_text(elapsed)} elapsed"
        if 0 < self.done < self.total:
            text += f", about {duration_text(elapsed / self.done * (self.total - self.done))} left"
        print(text, file=self.stream, flush=True)


@contextmanager
def progress(total: int, description: str, unit: str = "files", enabled: bool = True,
             stream: TextIO | None = None, every_percent: float = 5.0) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(count=1)``: a rich bar on a terminal, plain lines otherwise, nothing if disabled."""
    stream = stream if stream is not None else sys.stderr
    if not enabled or total <= 0:
        yield lambda count=1: None
        return
    if stream.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=Console(file=stream), transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda count=1: bar.advance(task, count)
        return
    lines = LineProgress(total, description, unit, stream, every_percent)
    yield lines.advance
