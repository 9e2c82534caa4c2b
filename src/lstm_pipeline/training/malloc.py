"""glibc malloc settings for training: keep large buffers on the heap instead of mmap/munmap.

A training step allocates and frees the same large tensors (logits, their gradients) every step.
glibc serves blocks above ``M_MMAP_THRESHOLD`` with a fresh ``mmap`` and returns them with
``munmap``, so each step pays page faults and zeroing for every large tensor again; at a 10k
vocabulary that is 20-40% of a CPU step. ``mallopt(M_MMAP_MAX, 0)`` keeps them on the heap and a
high ``M_TRIM_THRESHOLD`` stops the heap from being handed back after every step, which is what
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...`` do when set before the process starts.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD = 1 << 30  # 1 GiB


def tune_malloc() -> bool:
    """Apply the settings in this process (glibc only; a no-op elsewhere or when the user set
    ``MALLOC_MMAP_MAX_`` / ``MALLOC_TRIM_THRESHOLD_`` or ``LSTM_PIPELINE_MALLOC=default``).
    Returns whether they were applied."""
    if not sys.platform.startswith("linux") or os.environ.get("LSTM_PIPELINE_MALLOC") == "default":
        return False
    if "MALLOC_MMAP_MAX_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    log.debug("glibc mallopt(M_MMAP_MAX=0, M_TRIM_THRESHOLD=%d): %s", TRIM_THRESHOLD, ok)
    return ok
