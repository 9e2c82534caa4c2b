"""Whole files or none: every file the project writes goes through here.

A file is written to a hidden temporary sibling (``.<name>.tmp-<pid>-<random><suffix>``, same
directory so the rename stays on one file system), flushed to disk, given the user's umask mode, and
renamed over its real name with ``os.replace``. A reader sees the old file or the new one, never half
of one; a full disk, a file-size limit (``ulimit -f``) or a kill leaves the old file (or none) under
the real name. Temporaries left by a killed process (its pid is gone) are removed by the next write of
the same file (:func:`remove_stale_temporaries`).

A write that fails because the disk, the quota or the file-size limit is full raises
:class:`StorageError`: one line naming the file and what to do, not a traceback.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

#: errors that mean "no room": the disk, the user's quota, the process's file-size limit
FULL = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


class StorageError(FileNotFoundError):
    """A write failed for lack of room (``ENOSPC``, ``EDQUOT``, ``EFBIG``). An ``OSError`` (with the
    cause's ``errno``); a ``FileNotFoundError`` subclass because the CLI prints those as one line."""

    def __init__(self, path: str | os.PathLike, cause: OSError):
        reason = {errno.EFBIG: "the file-size limit (ulimit -f) was reached",
                  errno.EDQUOT: "the disk quota is exceeded"}.get(cause.errno, "the disk is full")
        self.message = (f"Could not write {path}: {reason} ({os.strerror(cause.errno)}). Nothing was written "
                        f"under that name. Free some space (or raise the limit) and run the command again.")
        super().__init__(cause.errno, self.message, str(path))

    def __str__(self) -> str:
        return self.message


def as_storage_error(exc: BaseException, path: str | os.PathLike) -> BaseException:
    """``exc`` as a :class:`StorageError` when it is an ``OSError`` for lack of room; else ``exc``."""
    if isinstance(exc, StorageError) or not isinstance(exc, Exception):
        return exc
    if isinstance(exc, OSError):
        return StorageError(path, exc) if exc.errno in FULL else exc
    # writers in Rust or C++ (safetensors) report the OS error in their message: "(os error 27)", "code: 28"
    m = re.search(r"os error (\d+)|\bcode: (\d+)", str(exc))
    code = int(m.group(1) or m.group(2)) if m else None
    return StorageError(path, OSError(code, os.strerror(code))) if code in FULL else exc


def file_mode() -> int:
    """The mode a new file gets under the user's umask (``0o666 & ~umask``): 0644 under umask 022."""
    try:  # Linux: read it without changing it (os.umask would, for every thread, for a moment)
        with open("/proc/self/status") as f:
            umask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries (``.<name>.tmp-<pid>-...`` and ``.<name>.old-<pid>``, files or directories)
    that a killed writer of ``path`` left beside it; only those whose process is gone. Returns them."""
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(?:tmp|old)-(\d+)(?:[-.].*)?$")
    removed = []
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return removed
    for p in siblings:
        m = pattern.match(p.name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def temporary_sibling(path: str | os.PathLike, kind: str = "tmp") -> Path:
    """``.<name>.<kind>-<pid>-<random><suffix>`` beside ``path`` (the suffix kept: writers such as
    matplotlib pick the format from it)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that takes a file name (``torch.jit.save``,
    ``torch.onnx.export``, ``savefig``); when the block ends without error the file is synced, given the
    umask mode and renamed to ``path``. On error it is removed and ``path`` is untouched. Raises
    :class:`StorageError` when the disk or a limit is full."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        _remove(tmp)
        converted = as_storage_error(exc, path)
        if converted is not exc:
            raise converted from None
        raise


def _remove(p: Path) -> None:
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    except OSError:
        pass


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8",
                 newline: str | None = None) -> Iterator[IO]:
    """``open(path, mode)`` that writes all or nothing: the file object writes a temporary sibling that
    replaces ``path`` when the block ends without error (see :func:`atomic_path`). ``mode``: ``"w"`` or
    ``"wb"``. Raises :class:`StorageError` when the disk or a limit is full."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp:
        kwargs = {} if "b" in mode else {"encoding": encoding, "newline": newline}
        with open(tmp, mode, **kwargs) as f:
            yield f


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`); returns the path."""
    with atomic_write(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`); returns the path."""
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)
