"""Small I/O helpers shared by every artefact writer: atomic directory writes, JSON, hashing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import ArtifactError, FormatVersionError


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `target`; on success it replaces `target`.

    On any exception the temporary directory is removed and `target` is left exactly as it was, so a
    reader never sees a half-written artefact. An existing `target` is swapped out only after the new
    one is complete (rename old away, rename new in, delete old).
    """
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not target.is_dir():
        raise ArtifactError(f"{target} exists and is not a directory; expected a directory path")
    if target.exists() and not overwrite:
        raise ArtifactError(f"{target} already exists; pass overwrite=True to replace it")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=parent))
        os.rmdir(old)
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success its file is flushed to disk and renamed
    onto `target`, so a reader (or a restarted job) sees the whole file or none. The name holds
    the process id, so several processes may write the same target at once (the last rename wins).
    """
    target = Path(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | os.PathLike, obj: object) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False, sort_keys=False)
        f.write("\n")


def read_json(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path} is missing")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}); the file is corrupted") from exc


def read_manifest(path: str | os.PathLike, format_name: str, format_version: int) -> dict:
    """Read an artefact's JSON manifest and check its format name and version."""
    path = Path(path)
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise ArtifactError(f"{path} holds a JSON {type(meta).__name__}; expected an object")
    if meta.get("format") != format_name:
        raise ArtifactError(f"{path} has format {meta.get('format')!r}; expected {format_name!r}")
    if meta.get("format_version") != format_version:
        raise FormatVersionError(
            f"{path} has format version {meta.get('format_version')!r}; this release reads "
            f"version {format_version}")
    return meta


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def versions() -> dict:
    """Versions of the packages that shape an artefact, recorded in every manifest."""
    import platform
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("genrec-lite", "numpy", "torch", "sentence-transformers", "transformers"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


@contextlib.contextmanager
def no_hf_progress() -> Iterator[None]:
    """transformers' progress bars off while a model is saved or loaded: save_pretrained draws a
    "Writing model shards" bar per save (one per checkpoint, under the training bar) and
    from_pretrained a "Loading weights" bar per load (twice per export). The setting the caller
    had is restored after. transformers is imported only here, when called."""
    from transformers.utils import logging as hf_logging

    if not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()
