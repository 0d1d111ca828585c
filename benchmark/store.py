"""Opening the MLflow store safely: one creator at a time, and one clear line when it cannot work.

Why: MLflow creates a new sqlite store by running its Alembic migrations, and two processes doing
that at once can leave the schema stuck half-way (``table _alembic_tmp_tags already exists``),
breaking the store for good. A file lock next to the database serialises creation and upgrades;
a store already left half-migrated, a read-only one, a full disk, an unknown URI scheme or an
unreachable server are each explained in one line naming the store and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sqlite3
from pathlib import Path
from urllib.parse import urlparse

from .errors import BenchError

LOCK_TIMEOUT_S = 300
KNOWN_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "file", "")


class StoreError(BenchError):
    """The tracking store cannot be opened or written."""


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):].split("?", 1)[0]
        return Path(path) if path and path != ":memory:" else None
    return None


@contextlib.contextmanager
def creation_lock(uri: str):
    """Hold ``<db>.lock`` while the sqlite store is created or upgraded (no-op for other stores)."""
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    from filelock import FileLock, Timeout

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S)
        with lock:
            yield
    except Timeout:
        raise StoreError(f"{path}: another process has held {path}.lock for {LOCK_TIMEOUT_S} s; "
                         f"wait for it or remove the lock file if no bench process is running") from None
    except OSError as exc:
        raise explain_os_error(exc, uri) from None


def create_sqlite_atomically(uri: str) -> None:
    """Create a new sqlite store's tables in a side file and rename it into place when complete.

    Why: MLflow's Alembic migrations take seconds (more under load); a process killed in the middle
    of creating ``mlflow.db`` in place left a half-migrated store that every later run refused
    (measured: a ``bench tune`` killed 12 s after it started, then the same command: "left
    half-migrated"). Built beside it and renamed, the store is either absent or complete. Call it
    under :func:`creation_lock`; a side file left by a killed creator is stale and is replaced.
    MLflow adds its default experiment itself when it first opens the store.
    """
    path = sqlite_path(uri)
    if path is None or path.is_file() and path.stat().st_size > 0:
        return
    if path.exists() and not path.is_file():
        return  # a folder or a device: check_sqlite says so in one line
    try:
        from mlflow.store.db.utils import _initialize_tables
        from sqlalchemy import create_engine
    except ImportError:  # pragma: no cover - another MLflow layout: MLflow creates the store in place
        return
    side = path.with_name(path.name + ".creating")
    side.unlink(missing_ok=True)
    engine = create_engine(f"sqlite:///{side}")
    try:
        _initialize_tables(engine)
    finally:
        engine.dispose()
    os.replace(side, path)


def check_before_open(uri: str, writable: bool = True) -> None:
    """Problems that can be seen before MLflow touches the store: scheme, reachability, sqlite state."""
    import logging

    # MLflow logs a store error with its full traceback before raising it; the CLI says it in one line
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    scheme = urlparse(uri).scheme.split("+", 1)[0].lower()
    if len(scheme) == 1:  # a Windows drive letter, not a scheme
        scheme = ""
    if scheme not in KNOWN_SCHEMES:
        raise StoreError(f"--tracking-uri {uri}: unknown scheme {scheme!r}; use sqlite:///PATH, "
                         f"postgresql://..., http(s)://HOST:PORT or a folder path")
    if scheme in ("http", "https"):
        check_reachable(uri)
    path = sqlite_path(uri)
    if path is not None:
        check_sqlite(path, uri)


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """MLflow retries an unreachable server for minutes; a plain TCP connect answers in seconds."""
    parsed = urlparse(uri)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
            pass
    except OSError as exc:
        raise StoreError(f"--tracking-uri {uri}: no tracking server answers at {parsed.hostname}:{port} "
                         f"({exc.strerror or exc}); start it (bench ui / mlflow server) or fix the URI") from None


def check_sqlite(path: Path, uri: str) -> None:
    if path.exists() and not os.access(path, os.W_OK) or not path.exists() and path.parent.exists() \
            and not os.access(path.parent, os.W_OK):
        raise StoreError(f"{path}: the MLflow store is read-only; make it writable or pass "
                         f"--tracking-uri sqlite:///A/WRITABLE/mlflow.db")
    if path.is_dir():  # MLflow would retry opening it for minutes before saying the same
        raise StoreError(f"{path}: is a folder, not an sqlite file; pass --tracking-uri sqlite:///{path}/mlflow.db "
                         f"(a file inside it) or another path")
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:  # read-write (the file is writable, checked above): a process killed mid-transaction leaves a
        # hot journal that the next connection must roll back, which a read-only one cannot do
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=30)) as db:
            tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not a readable sqlite database ({exc}); move it aside and let bench "
                         f"create a new store, or pass --tracking-uri to another one") from None
    leftovers = sorted(t for t in tables if t.startswith("_alembic_tmp_"))
    if leftovers:
        drops = "; ".join(f"DROP TABLE {t}" for t in leftovers)
        raise StoreError(f"{path}: the MLflow store was left half-migrated (leftover {', '.join(leftovers)} from "
                         f"an interrupted schema upgrade); back it up, then run: sqlite3 {path} '{drops}' && "
                         f"mlflow db upgrade {uri}")


def explain_os_error(exc: OSError, uri: str) -> StoreError:
    where = sqlite_path(uri) or uri
    if exc.errno == errno.ENOSPC:
        return StoreError(f"{where}: no space left on the disk of the MLflow store; free some space or "
                          f"pass --tracking-uri to a store on another disk")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StoreError(f"{where}: the MLflow store is read-only ({exc.strerror}); make it writable or pass "
                          f"--tracking-uri sqlite:///A/WRITABLE/mlflow.db")
    return StoreError(f"{where}: cannot open the MLflow store ({exc.strerror or exc})")


def explain(exc: BaseException, uri: str | None = None) -> StoreError | None:
    """A one-line StoreError for a known store failure raised anywhere in a run, else None."""
    from .tracking import resolve_tracking_uri

    if isinstance(exc, StoreError):
        return exc
    uri = uri or resolve_tracking_uri(None)
    where = sqlite_path(uri) or uri
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM):
        return explain_os_error(exc, uri)
    text = str(exc).lower()
    if "database or disk is full" in text or "no space left" in text:
        return StoreError(f"{where}: no space left on the disk of the MLflow store (or its artifacts); free some "
                          f"space or pass --tracking-uri to a store on another disk")
    if "readonly database" in text or "read-only file system" in text:
        return StoreError(f"{where}: the MLflow store is read-only; make it writable or pass "
                          f"--tracking-uri sqlite:///A/WRITABLE/mlflow.db")
    if "_alembic_tmp_" in text or "out-of-date database schema" in text:
        return StoreError(f"{where}: the MLflow store's schema is not at MLflow's version ({str(exc).splitlines()[0][:200]}); "
                          f"back it up and run: mlflow db upgrade {uri}")
    if "could not find a registered" in text or "unsupported uri" in text:
        return StoreError(f"--tracking-uri {uri}: not a tracking store MLflow knows; use sqlite:///PATH, "
                          f"postgresql://... or http(s)://HOST:PORT")
    if "unable to open database file" in text:
        return StoreError(f"{where}: sqlite cannot open this file (a folder, or a folder that cannot be created?); "
                          f"pass --tracking-uri sqlite:///PATH/TO/mlflow.db")
    if isinstance(exc, ModuleNotFoundError):
        return StoreError(f"--tracking-uri {uri}: its database driver is not installed ({exc.name}); "
                          f"pip install {exc.name} (for PostgreSQL: pip install psycopg2-binary)")
    if "api request to" in text:
        return StoreError(f"--tracking-uri {uri}: the server answered, but not as an MLflow tracking server "
                          f"({str(exc).splitlines()[0][:200]}); check the host and port")
    if "max retries exceeded" in text or "connection refused" in text or "could not connect" in text:
        return StoreError(f"--tracking-uri {uri}: the tracking server does not answer; start it or fix the URI")
    return None
