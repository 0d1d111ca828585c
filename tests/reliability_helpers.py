"""Helpers for the failure-behaviour tests: real small filesystems, synthetic corpora, test-only feature sets.

Root (as in CI containers) ignores permission bits, so a read-only or full filesystem is a real
tmpfs mounted for the test; where mounting is not allowed the test falls back to permissions or skips.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


@contextlib.contextmanager
def tiny_fs(path: Path, size: str = "256k"):
    """A real tmpfs of ``size`` at ``path`` (root only), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def read_only_view(source: Path, view: Path):
    """``view`` shows ``source`` read-only: a read-only bind mount (root), else write permission dropped."""
    view.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", str(source), str(view)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
            yield view
        finally:
            subprocess.run(["umount", "-l", str(view)], capture_output=True)
    else:
        view.rmdir()
        view.symlink_to(source)
        items = [source, *source.rglob("*")]
        for item in items:
            item.chmod(item.stat().st_mode & ~0o222)
        try:
            yield view
        finally:
            for item in items:
                item.chmod(item.stat().st_mode | 0o200)


def fill(path: Path) -> None:
    """Fill the filesystem of ``path`` to the last byte."""
    with contextlib.suppress(OSError):
        with open(path / "filler", "wb", buffering=0) as handle:
            while True:
                handle.write(b"\0" * 4096)


def write_tone(path: Path, seconds: float, freq: float = 220.0, sr: int = 16_000) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(int(freq))
    signal = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, signal.astype(np.float32), sr)
    return path


def tone_corpus(root: Path, speakers: int = 4, per_emotion: int = 2, seconds: float = 0.6) -> Path:
    """<root>/<emotion>/<speaker>/N.wav: a folder corpus of distinct tones."""
    for e, emotion in enumerate(("anger", "sadness")):
        for s in range(speakers):
            for n in range(per_emotion):
                write_tone(root / emotion / f"spk{s}" / f"{n}.wav", seconds, 150 + 90 * e + 7 * s + 3 * n)
    return root


def bench(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300, **kwargs):
    """Run the ``bench`` console script as a user types it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([str(Path(sys.executable).parent / "bench"), *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def one_line_error(result) -> str:
    """Assert the command failed with one error line and no traceback; return that line."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]
