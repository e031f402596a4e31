"""How the process heap is used: freed memory kept for the next batch, or given back after a one-off step.

glibc serves large allocations (from 128 KiB, rising with use to at most 32 MiB) by fresh memory maps
and trims the heap top beyond twice that, so a network's activations (16 MB each for a batch of 16
128-px tiles at width 16) are mapped, faulted in page by page, and unmapped again on every batch:
35,000 page faults per batch, a quarter of a U-Net's forward time on CPU. :func:`keep_freed_heap`
raises both thresholds, so the next batch reuses the same memory; :func:`release_memory` gives it
back after a one-off step that will not recur (tissue detection, a trained model).
"""

from __future__ import annotations

import functools
import gc
import logging
import os

from mrseg.core.workers import libc

log = logging.getLogger(__name__)

#: glibc ``mallopt`` parameters (``malloc.h``).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Allocations up to this size come from the heap, not from fresh memory maps.
HEAP_MMAP_THRESHOLD = 256 << 20
#: glibc's own ceiling for it before 2.35 (half of a 64-bit arena heap), tried when the first is refused.
HEAP_MMAP_THRESHOLD_FALLBACK = 32 << 20
#: Free memory glibc keeps at the top of the heap before giving it back on its own.
HEAP_TRIM_THRESHOLD = 1 << 30
#: Environment settings by which a user chose glibc's thresholds already (left as they are).
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


@functools.cache
def keep_freed_heap() -> bool:
    """Let freed memory serve the next allocations of the same size (glibc ``mallopt``; once per process).

    Sets glibc's mmap threshold to :data:`HEAP_MMAP_THRESHOLD` and its trim threshold to
    :data:`HEAP_TRIM_THRESHOLD`, so tensors of up to 256 MiB come from the heap and the heap keeps up
    to 1 GiB free for the next batch. The peak resident memory does not grow (the same memory is used
    again), but it is not given back between batches; :func:`release_memory` still does after a step.
    Nothing is changed where the user set ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` or a
    ``glibc.malloc`` tunable, or without glibc.

    Returns
    -------
    bool
        Whether the thresholds were set.
    """
    if any(name in os.environ for name in _USER_SETTINGS) or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        log.debug("heap: glibc thresholds left as the environment sets them")
        return False
    c = libc()
    if c is None or not hasattr(c, "mallopt"):  # not glibc
        return False
    mmap = HEAP_MMAP_THRESHOLD
    if c.mallopt(_M_MMAP_THRESHOLD, mmap) != 1:
        mmap = HEAP_MMAP_THRESHOLD_FALLBACK
        if c.mallopt(_M_MMAP_THRESHOLD, mmap) != 1:
            return False
    if c.mallopt(_M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD) != 1:
        return False
    log.debug("heap: allocations up to %d MiB from the heap, %d MiB kept free", mmap >> 20, HEAP_TRIM_THRESHOLD >> 20)
    return True


def release_memory(*, collect: bool = True) -> None:
    """Collect garbage (unless ``collect`` is False) and give the freed heap back to the OS.

    glibc ``malloc_trim`` (a no-op elsewhere): well under a millisecond, while a full garbage
    collection with torch loaded takes 70-90 ms, so callers whose memory is freed by reference
    counting alone (numpy work arrays) pass ``collect=False``.

    glibc keeps freed blocks of its heap for reuse by the thread that freed them, so the peak of a
    one-off step (a slide's tissue detection: about 40 MB of freed work arrays at CAMELYON16 size;
    a trained MRN: about 0.4 GB) stays in the resident set, and the next step's threads (the tile
    loaders, the next model) add their own on top.
    """
    if collect:
        gc.collect()
    c = libc()
    if c is not None and hasattr(c, "malloc_trim"):  # glibc only
        c.malloc_trim(0)


__all__ = ["HEAP_MMAP_THRESHOLD", "HEAP_TRIM_THRESHOLD", "keep_freed_heap", "release_memory"]
