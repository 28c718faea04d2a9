"""Atomic writes: an interrupted stage leaves the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
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


_AT_FDCWD = -100  # renameat2's "relative to the current folder"
_RENAME_EXCHANGE = 2


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    """libc's renameat2 (Linux, glibc 2.28 or later); None where there is none."""
    if sys.platform != "linux":
        return None
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is not None:
        renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        renameat2.restype = ctypes.c_int
    return renameat2


def exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths in one step (renameat2 with RENAME_EXCHANGE), so that neither name is
    ever missing; False where the system or the file system cannot (then nothing has changed)."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(error, os.strerror(error), str(first), None, str(second))


def _restore_interrupted(path: Path, old: Path) -> None:
    """Where a replacement without `exchange` was interrupted between its two renames, the previous
    output is whole at `old` and `path` is missing: put it back. Beside `path`, `old` is a leftover."""
    if not old.exists():
        return
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(old, path)
        sync(path.parent)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `path`; on success its files are flushed to the disk
    and it replaces `path` whole. `path` is never missing: the two folders are swapped in one step
    where the system can (Linux); elsewhere the old one waits at `.NAME.old` for the moment between
    two renames, and is put back by the next call if that moment was interrupted."""
    path = Path(path)
    _make_parent(path)
    old = path.with_name(f".{path.name}.old")
    _restore_interrupted(path, old)
    temp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    temp.chmod(0o755)  # mkdtemp makes it private; the stage's output is an ordinary directory
    try:
        yield temp
        for written in [*sorted(temp.rglob("*")), temp]:
            if written.is_dir() or written.is_file():
                sync(written)
        if path.exists() and exchange(temp, path):
            sync(path.parent)  # `temp` now holds the previous output, removed below
        else:
            if path.exists():
                os.replace(path, old)
            os.replace(temp, path)
            sync(path.parent)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
