"""Where an SSL model's weights are on this machine, and what identifies them for the cache key.

A hub id resolves to a snapshot in the Hugging Face cache, named by its commit; a local folder
to a SHA-256 of its config and weight files. Only the main process ever touches the network
(once, when a model is missing); workers then load the same snapshot from disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import BenchError

log = logging.getLogger(__name__)

# Files the weights and preprocessing live in; a local folder's fingerprint hashes these.
MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".bin", ".pt", ".pth", ".msgpack", ".h5")


class SSLModelError(BenchError):
    """A self-supervised model is missing, cannot be downloaded, or does not fit the options."""


def is_local(model: str) -> bool:
    """A folder that exists, or something spelled like a path (then missing is an error, not a hub id)."""
    return Path(model).expanduser().is_dir() or model.startswith(("/", "./", "../", "~", "."))


def hub_cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _folder_fingerprint(folder: Path) -> str:
    """SHA-256 over the names and contents of a model folder's weight and config files."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise SSLModelError(f"{folder}: no model files (config.json, *.safetensors); save the model there with "
                            f"save_pretrained, or give a hub id")
    for path in files:
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


_FINGERPRINTS: dict[tuple, str] = {}


def folder_fingerprint(folder: Path) -> str:
    """:func:`_folder_fingerprint`, computed once per process while no file changes size or time."""
    stamp = tuple(sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()))
    if (folder, stamp) not in _FINGERPRINTS:
        _FINGERPRINTS[(folder, stamp)] = _folder_fingerprint(folder)
    return _FINGERPRINTS[(folder, stamp)]


@dataclass(frozen=True)
class ModelSource:
    """Where the weights are on this machine and what identifies them (commit or content hash)."""

    folder: Path
    identity: str  # "commit:<sha>" for a hub snapshot, "sha256:<hash>" for a local folder
    commit: str | None


def resolve_source(model: str, revision: str | None, set_name: str) -> ModelSource:
    if not model:
        raise SSLModelError(f"feature set {set_name} needs a model: use --features hf:<hub id or folder>, "
                            f"e.g. hf:microsoft/wavlm-base-plus")
    if is_local(model):
        folder = Path(model).expanduser().resolve()
        if not (folder / "config.json").is_file():
            raise SSLModelError(f"model folder {folder} has no config.json; save a model there with "
                                f"model.save_pretrained(folder) (and its feature extractor), or give a hub id")
        return ModelSource(folder, f"sha256:{folder_fingerprint(folder)}", None)
    return _hub_snapshot(model, revision)


def _hub_snapshot(model: str, revision: str | None) -> ModelSource:
    """The local snapshot of a hub model: from the cache, else downloaded once (main process only)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import logging as hub_logging

    patterns = ["*.json", "*.safetensors", "pytorch_model.bin"]
    try:
        folder = snapshot_download(model, revision=revision, local_files_only=True, allow_patterns=patterns)
    except Exception:  # not cached (LocalEntryNotFoundError), or a revision the cache lacks
        folder = None
    if folder is None and not _offline():
        quiet = hub_logging.get_verbosity()
        hub_logging.set_verbosity_error()  # one clear line instead of five retry warnings
        try:
            log.info("downloading %s into %s", model, hub_cache_dir())
            folder = snapshot_download(model, revision=revision, allow_patterns=patterns)
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise SSLModelError(_missing_message(model, revision, f"download failed: {reason}")) from None
        finally:
            hub_logging.set_verbosity(quiet)
    if folder is None:
        raise SSLModelError(_missing_message(model, revision, "offline: HF_HUB_OFFLINE is set"))
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise SSLModelError(f"hub model {model}: its snapshot {folder} has no config.json; is it an audio model?")
    return ModelSource(folder, f"commit:{folder.name}", folder.name)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _missing_message(model: str, revision: str | None, reason: str) -> str:
    at = f" --revision {revision}" if revision else ""
    return (f"model {model} is not in the Hugging Face cache {hub_cache_dir()} ({reason}); on a machine with "
            f"network run `hf download {model}{at}` and copy its cache folder here (or point HF_HOME at it), "
            f"or save the model with save_pretrained and use --features hf:/path/to/folder")
