"""glibc malloc settings for processes that serve forward passes: freed tensors kept for reuse.

Why: by default glibc returns freed memory to the kernel (trimming the heap top, or unmapping
chunks it served with mmap), so each forward pass touches fresh pages for activations it had
just freed. The tiny CNN's tail on batches of 32 ran 7,300-9,100 samples/s in a fresh process
and 10,900-11,800 with freed memory kept (two runs each, 2 cores); the enclave worker's head at
ResNet-50 `layer2` went from 1.20x to ~1.0x its in-process time the same way. The enclave
worker gets these settings through its environment (`enclave/budget.py`, which also fixes one
arena and ties trimming to its memory budget); `privpart serve` sets them at start with
`mallopt`, which applies to every allocation after the call.

Kept memory is bounded: chunks of `MMAP_THRESHOLD_MAX` or more are still mapped and unmapped
on their own, and at most `trim_bytes` of free heap is kept. This module imports nothing heavy.
"""

from __future__ import annotations

import ctypes

MIB = 1 << 20
MMAP_THRESHOLD_MAX = 32 * MIB  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit
KEEP_FREE_BYTES = 256 * MIB
M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, <malloc.h>
M_MMAP_THRESHOLD = -3


def keep_freed_memory(trim_bytes: int = KEEP_FREE_BYTES) -> bool:
    """Serve allocations below 32 MiB from the heap and keep up to `trim_bytes` of it free for
    reuse; False where the C library has no `mallopt` (not glibc), which changes nothing."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mmap_ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
    return mallopt(M_TRIM_THRESHOLD, max(trim_bytes, MMAP_THRESHOLD_MAX)) == 1 and mmap_ok
