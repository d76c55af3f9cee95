"""Process-level settings: glibc malloc tuned for CPU training, and kept bounded in a server.

`tune_malloc` (applied when the package is imported) keeps big activation buffers between
steps, which makes CPU training 3-4x faster here but never hands freed memory back. A server
runs for days, so `serve_malloc` (applied by `serve.create_app`, hence `tailor serve`) keeps that
fast path and bounds what it holds instead. `malloc_mode()` says which one this process has.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading
import time

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

#: How often a server hands freed memory back (seconds): one malloc_trim costs 1-10 ms here.
RELEASE_EVERY_S = 10.0

_mode = "default"
_releaser: threading.Thread | None = None
_lock = threading.Lock()


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """glibc, for mallopt and malloc_trim; None elsewhere (musl, macOS: nothing to tune)."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


def malloc_mode() -> str:
    """'training' (tune_malloc), 'server' (serve_malloc), or 'default' (untouched: not glibc)."""
    return _mode


def tune_malloc() -> bool:
    """Stop glibc from unmapping big activation buffers after every step.

    On these machines glibc returns and re-maps large buffers on each training step: 60-100%
    system time and 3-4x slower convolutions. Disabling mmap for big blocks and never trimming
    the heap fixes it (DESIGN.md). Environment variables are set too so that worker processes
    started with spawn (DDP, DataLoader) get the same behaviour. Returns True when applied.

    Freed memory is then kept for good, in every arena a thread touched: right for a training
    run, wrong for a long-running server (see `serve_malloc`).
    """
    global _mode
    if _mode != "default":
        return True
    os.environ.setdefault("MALLOC_MMAP_MAX_", "0")
    os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", "100000000000")
    libc = _libc()
    if libc is None:
        return False
    ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    if ok:
        _mode = "training"
    return ok


def serve_malloc(release_every: float = RELEASE_EVERY_S) -> bool:
    """Malloc for a long-running server: flat memory under load, the training speed kept.

    With `tune_malloc`'s settings alone a server grows: requests run in a thread pool, glibc
    gives threads up to 8 arenas per core, and each arena keeps the largest forward pass it ever
    ran, for good (1.0 -> 1.8 GB in 2 minutes of 8 clients, still climbing). Restoring glibc's
    defaults stops that but re-maps every activation buffer on every request again (1.8x the CPU
    per request with PyTorch here). So this keeps big blocks on the heap and instead

    - puts every thread on one arena (M_ARENA_MAX=1): the pool shares one working set, and
    - hands freed memory back every `release_every` seconds from a daemon thread
      (malloc_trim(0), 1-10 ms), so a burst of large requests does not pin its peak.

    Figures: bench/results/serve_memory.jsonl (bench/bench_serve_memory.py). Safe to call more
    than once (one thread per process). Returns True when applied (glibc only).
    """
    global _mode, _releaser
    if not tune_malloc():
        return False
    libc = _libc()
    assert libc is not None  # tune_malloc succeeded
    with _lock:
        if libc.mallopt(_M_ARENA_MAX, 1) != 1:
            return False
        if _releaser is None:
            _releaser = threading.Thread(
                target=_release_forever, args=(release_every,), name="release-memory", daemon=True
            )
            _releaser.start()
        _mode = "server"
    release_memory()  # what loading and any training before left behind
    return True


def _release_forever(seconds: float) -> None:
    while True:
        time.sleep(seconds)
        release_memory()


def release_memory() -> bool:
    """Hand freed heap memory back to the system now (glibc malloc_trim). True if any was."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))
