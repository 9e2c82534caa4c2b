"""Content fingerprints of local data files: what the data caches are keyed on.

``datasets`` fingerprints a local file by its path and modification time only, so a file replaced
under the same name and mtime (``touch -r old new``, ``os.utime``, a restore from a backup, ``rsync
-a`` of other content) would reuse the old arrow tables, tokenizer and encoded ids. Every cache this
project keeps on local files is keyed on :func:`files_digest` instead: each file's size plus a hash
of its bytes, streamed in 4 MiB blocks (``xxhash`` XXH3-128, a ``datasets`` dependency, else
``hashlib.blake2b``), so memory stays flat for any corpus size.

Within one process a file is hashed once per state (path, size, mtime, ctime, inode): the datasets
load and the tokenizer/encoding keys share the result.
"""
from __future__ import annotations

import hashlib
import os
from typing import Iterable

try:  # datasets depends on xxhash: it is there in practice; blake2b is the fallback
    import xxhash

    def _hasher():
        return xxhash.xxh3_128()
except ImportError:  # pragma: no cover
    def _hasher():
        return hashlib.blake2b(digest_size=16)

BLOCK = 4 << 20  # bytes per read
_memo: dict[tuple, str] = {}


def file_digest(path: str | os.PathLike, block: int = BLOCK) -> str:
    """``"<size>-<hex hash>"`` of the file's bytes, read in ``block``-byte pieces.
    Raises ``OSError`` (``FileNotFoundError``, ``PermissionError``) when it cannot be read."""
    st = os.stat(path)
    state = (os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if state in _memo:
        return _memo[state]
    h = _hasher()
    buf = bytearray(block)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    digest = f"{st.st_size}-{h.hexdigest()}"
    _memo[state] = digest
    return digest


def files_digest(paths: Iterable[str | os.PathLike]) -> str:
    """One 32-hex-digit key for the content of ``paths`` (in the order given; names do not count,
    so the same bytes under another name share caches)."""
    h = hashlib.blake2b(digest_size=16)
    for p in paths:
        h.update(file_digest(p).encode())
        h.update(b"\0")
    return h.hexdigest()
