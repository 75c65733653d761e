"""Keep freed memory for the next request instead of handing it back to the kernel (glibc).

A render allocates and frees the same activation-sized buffers again and again (Wav2Lip's decoder
at batch 16 in bf16: up to ~19 MB each; WavLM's feature extractor: ~17 MB). glibc serves blocks
above its mmap threshold (dynamic, from 128 KiB) with a fresh ``mmap`` and returns them with
``munmap`` on free, so every such tensor costs a page fault per 4 KiB page and the kernel's
zeroing of it. Raising the threshold to glibc's maximum (32 MiB), not trimming the heap and using
one arena makes those blocks come back from the process's own, already-mapped heap. Measured on
the 2-core benchmark machine (bench/RESULTS.md): page faults per warm W-sentence ~228,000 -> ~45,
a few % of its time (within that machine's run-to-run noise of 5-10 %). The price: the
process keeps its peak heap between requests (RSS does not shrink after a render), which a
service holding its models resident pays anyway. ``REUSE_FREED_MEMORY=false`` turns it off.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# glibc <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: 2 GiB of free heap top before any trimming

_applied: bool | None = None


def reuse_freed_memory() -> bool:
    """Tune glibc's allocator for repeated large allocations (once per process). False where
    there is no glibc ``mallopt`` (musl, macOS): nothing changes there."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):  # no libc found, or one without mallopt
        log.debug("no glibc mallopt: freed memory handling left as it is")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
    # one arena: threads made after this (the render workers) allocate from the main heap,
    # which the two settings cover; a thread's own arena lives in mmap'd heaps that glibc
    # shrinks, and unmaps, on its own terms
    ok = mallopt(M_ARENA_MAX, 1) == 1 and ok
    ok = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    _applied = ok
    log.debug("freed memory kept for reuse (mmap threshold 32 MiB, no trimming, one arena): %s", ok)
    return ok
