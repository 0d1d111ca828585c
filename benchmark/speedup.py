"""``bench speedup``: this checkout against an older revision, end to end, timed in one run.

Why: speed claims must be ratios measured side by side under the same load, not absolute times
from different days. Both versions run the same ``bench run`` command as fresh processes
(``python -m benchmark.cli run ...`` with the revision's source first on ``PYTHONPATH``), each with
its own MLflow store and feature cache: *cold* is a first run with an empty cache, *warm* the same
command again with the cache filled. Rounds alternate which version goes first. ``--load N``
keeps N busy-looping processes running throughout, to measure under load as well as idle.

The older revision is exported with ``git archive`` into a temporary folder; it runs with this
environment's installed packages (its dependencies must be a subset, as they are for every
revision since the first build).
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import BenchError


@dataclass
class Timing:
    version: str  # "baseline" or "current"
    phase: str  # "cold" or "warm"
    round: int
    seconds: float


@dataclass
class SpeedupResult:
    timings: list[Timing] = field(default_factory=list)

    def median(self, version: str, phase: str) -> float:
        return statistics.median(t.seconds for t in self.timings if t.version == version and t.phase == phase)

    def ratio(self, phase: str) -> float:
        """baseline seconds / current seconds (> 1: the current code is faster)."""
        return self.median("baseline", phase) / self.median("current", phase)


def export_revision(revision: str, destination: Path) -> Path:
    """The source tree of ``revision`` of the git repository holding this package."""
    repo = Path(__file__).resolve().parents[1]
    try:
        archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", revision],
                                 capture_output=True, timeout=120)
        if archive.returncode != 0:
            reason = archive.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["git failed"]
            raise BenchError(f"--baseline {revision}: cannot export it from {repo} ({reason[0]}); "
                             f"give a commit or tag of this git checkout")
        destination.mkdir(parents=True)
        subprocess.run(["tar", "-x", "-C", str(destination)], input=archive.stdout, check=True, timeout=120,
                       capture_output=True)
        # byte-compiled like the checkout it is compared with, so its first (cold) run pays no compilation
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(destination / "benchmark")], check=True,
                       timeout=300, capture_output=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BenchError(f"--baseline {revision}: cannot export it ({exc}); git and tar must be installed") from None
    return destination


def _burn() -> None:  # pragma: no cover - runs in a child process until terminated
    while True:
        pass


PATH_OPTIONS = ("--data-dir", "--cache-dir", "--experiment")  # `bench run` options naming paths


def absolute_paths(arguments: list[str], cwd: Path | None = None) -> list[str]:
    """``arguments`` with each relative path made absolute (the values of :data:`PATH_OPTIONS`,
    as ``--data-dir ../shared/data`` or ``--data-dir=...``, and every ``folder:PATH`` corpus),
    because each version runs in its own working folder, where a relative path would name nothing.
    Other values (``--corpus emodb`` beside a folder called emodb) stay as typed."""
    cwd = cwd or Path.cwd()

    def absolute(path: str) -> str:
        return path if os.path.isabs(path) else str((cwd / path).resolve())

    def corpora(value: str) -> str:  # `--corpora emodb,folder:x.csv` too
        return ",".join("folder:" + absolute(part[len("folder:"):]) if part.startswith("folder:") else part
                        for part in value.split(","))

    out, after_path_option = [], False
    for argument in arguments:
        option, equals, value = argument.partition("=")
        if after_path_option:
            out.append(absolute(argument))
        elif argument.startswith("--") and equals and option in PATH_OPTIONS:
            out.append(f"{option}={absolute(value)}")
        else:
            out.append(corpora(argument) if "folder:" in argument else argument)
        after_path_option = argument in PATH_OPTIONS
    return out


def timed_run(source: Path, arguments: list[str], workdir: Path) -> float:
    """Wall seconds of ``bench run ARGUMENTS`` with ``source`` first on the path, in ``workdir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join([str(source), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if env.get("SER_BENCH_DATA"):  # the runs' working folder is not the caller's
        env["SER_BENCH_DATA"] = str(Path(env["SER_BENCH_DATA"]).resolve())
    command = [sys.executable, "-m", "benchmark.cli", "run", *arguments,
               "--cache-dir", str(workdir / "cache"), "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise BenchError(f"bench run {' '.join(arguments)} failed with {source} ({tail[0]})")
    return seconds


def measure(baseline: str, arguments: list[str], rounds: int = 2, load: int = 0,
            log: Callable[[str], None] = print) -> SpeedupResult:
    """Cold and warm ``bench run ARGUMENTS`` for the baseline revision and this checkout, alternated."""
    current = Path(__file__).resolve().parents[1]
    arguments = absolute_paths(arguments)
    result = SpeedupResult()
    burners = [multiprocessing.get_context("spawn").Process(target=_burn, daemon=True) for _ in range(load)]
    with tempfile.TemporaryDirectory(prefix="ser-bench-speedup-") as tmp:
        sources = {"baseline": export_revision(baseline, Path(tmp) / "baseline"), "current": current}
        for burner in burners:
            burner.start()
        try:
            for index in range(rounds):
                order = ("baseline", "current") if index % 2 == 0 else ("current", "baseline")
                for version in order:
                    workdir = Path(tmp) / f"{version}-{index}"
                    workdir.mkdir()
                    for phase in ("cold", "warm"):
                        seconds = timed_run(sources[version], arguments, workdir)
                        result.timings.append(Timing(version, phase, index + 1, seconds))
                        log(f"round {index + 1}/{rounds}: {version} {phase} {seconds:.1f} s")
        finally:
            for burner in burners:
                burner.terminate()
    return result
