"""Host memory: keep freed heap memory for reuse instead of handing it back to the kernel.

glibc's malloc serves every large block (128 KiB and up, the threshold rising to 32 MiB as blocks
are freed) from a fresh ``mmap`` and unmaps it on ``free``; blocks of a thread other than the main
one come from per-thread arenas that map anything above 64 MiB the same way. Every first write of
each 4 KiB page of such a block then page-faults into the kernel. Two places paid for it on every
call:

* XLA:CPU's temporary buffers of a compiled step: ViT-B train step, batch 2, 233,000 faults
  (912 MiB) and 0.42-0.47 s of system time per step, about 8 % of the step's CPU time;
* the input pipeline's decoded frames and crops: a 720p JPEG decode took 5.4 instead of 2.4 ms.

:func:`keep_freed_memory` sets, with ``mallopt``: one malloc arena for all threads
(``M_ARENA_MAX`` 1), no ``mmap`` blocks (``M_MMAP_MAX`` 0: they come from the heap), and no
trimming of the heap top (``M_TRIM_THRESHOLD`` -1). Freed blocks are then reused from the second
step on: 0 faults per step (benchmarks/host_memory_ab.py, benchmarks/RESULTS.md). The price: the
process keeps its peak heap size until it exits. Numbers are unchanged (only where memory comes
from changes). ``GRM_KEEP_FREED_MEMORY=0`` leaves the allocator alone.

Call it before the work starts its threads: ``launch.main`` does (first thing), the training loop
and every pipeline process again (once per process; too late for threads that already allocated,
which then keep their own arenas).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["ENV_SWITCH", "keep_freed_memory"]

ENV_SWITCH = "GRM_KEEP_FREED_MEMORY"
# glibc mallopt parameters (malloc.h) and the values set
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_SETTINGS = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))
_APPLIED: dict[int, bool] = {}  # pid -> applied (a forked worker applies it again)


def keep_freed_memory() -> bool:
    """Apply the glibc settings above, once per process; True when they are in effect."""
    pid = os.getpid()
    if pid not in _APPLIED:
        _APPLIED[pid] = _apply_mallopt()
    return _APPLIED[pid]


def _apply_mallopt() -> bool:
    if os.environ.get(ENV_SWITCH, "1").strip() == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return all(bool(libc.mallopt(param, value)) for param, value in _SETTINGS)
    except (OSError, AttributeError):
        return False
