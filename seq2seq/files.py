"""Atomic writes: an interrupted stage leaves the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seq2seq.errors import UserError


def _make_parent(path: Path) -> None:
    """Create the folders above `path`; a one-line `UserError` when that is impossible."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        blocking = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), None)
        reason = f"{blocking} is a file, not a folder" if blocking else (error.strerror or type(error).__name__)
        raise UserError(f"cannot write {path}: {reason}") from None


def check_output(path: str | Path, folder: bool = False) -> None:
    """Before any work, without writing anything: a one-line `UserError` when an output file (or
    `folder`) cannot be written at `path` (a file in the way, a folder where a file goes, no
    permission). Missing folders above it are fine: the atomic writers make them."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise UserError(f"cannot write {path}: it is {'a file' if folder else 'a folder'}")
    existing = next(parent for parent in path.parents if parent.exists())
    if not existing.is_dir():
        raise UserError(f"cannot write {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {path}: {existing} is not writable")


def sync(path: Path) -> None:
    """Flush a file's data, or a folder's entries, to the disk. Without it a power cut can leave a
    renamed file empty: the rename may reach the disk before the data does."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is flushed to the disk and renamed onto `path`."""
    path = Path(path)
    _make_parent(path)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temp = Path(temp_name)
    temp.chmod(0o644)  # mkstemp makes it private; the result is an ordinary file
    try:
        yield temp
        sync(temp)
        os.replace(temp, path)
        sync(path.parent)
    finally:
        temp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    with atomic_path(path) as temp:
        temp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: Any) -> None:
    """Write pretty, key-sorted JSON atomically (stable bytes for DVC)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `path`; on success its files are flushed to the disk
    and it replaces `path` whole."""
    path = Path(path)
    _make_parent(path)
    temp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    temp.chmod(0o755)  # mkdtemp makes it private; the stage's output is an ordinary directory
    try:
        yield temp
        for written in [*sorted(temp.rglob("*")), temp]:
            if written.is_dir() or written.is_file():
                sync(written)
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(temp, path)
        sync(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
