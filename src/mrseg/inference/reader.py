"""Reading a tiling's chunks ahead of the model: loader threads, one slide handle each, a bounded prefetch window.

Each chunk's concentric inputs come from one :func:`mrseg.wsi.concentric.read_concentric_grid`
call (each pyramid level is read once per chunk). A small thread pool reads ``prefetch`` chunks
ahead of the model, so slide I/O and decoding overlap compute. Slide handles are not shared
between threads: every loader thread opens its own.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import numpy as np

from mrseg.core.errors import MrsegError, SlideError
from mrseg.core.input_spec import InputSpec
from mrseg.inference.splitter import Tiling
from mrseg.wsi.concentric import read_concentric_grid
from mrseg.wsi.slide import Slide

log = logging.getLogger(__name__)


class ChunkReader:
    """Thread-safe reader of a tiling's chunks: ``reader(tile indices) -> uint8 (n, J, S, S, 3)`` patches.

    Parameters
    ----------
    slide_path, backend, slide_mpp
        What each loader thread passes to :meth:`mrseg.wsi.slide.Slide.open`.
    spec
        The checkpoint's input spec (mpps, patch size).
    tiling
        The tiles (their level-0 centres are read).
    """

    def __init__(
        self, slide_path: Path, backend: str, slide_mpp: float | None, spec: InputSpec, tiling: Tiling
    ) -> None:
        self.slide_path, self.backend, self.slide_mpp = slide_path, backend, slide_mpp
        self.spec, self.tiling = spec, tiling
        self._local = threading.local()
        self._handles: list[Slide] = []
        self._lock = threading.Lock()

    def _slide(self) -> Slide:
        slide: Slide | None = getattr(self._local, "slide", None)
        if slide is None:
            slide = Slide.open(self.slide_path, backend=self.backend, mpp=self.slide_mpp)
            self._local.slide = slide
            with self._lock:
                self._handles.append(slide)
        return slide

    def __call__(self, index: np.ndarray) -> np.ndarray:
        """Concentric patches of tiles ``index``; an unreadable region raises a :class:`SlideError` naming it."""
        slide = self._slide()
        try:
            # One grid cell per chunk: the chunk's tiles share each level's read.
            return read_concentric_grid(slide, self.tiling.centers_l0(index), self.spec, chunk_px=1 << 30)
        except Exception as error:  # backend errors (OpenSlideError, tifffile, codec errors...) too
            reason = str(error) if isinstance(error, MrsegError) else f"{type(error).__name__}: {error}"
            box = self.tiling.boxes_l0(index)
            raise SlideError(
                f"{self.slide_path}: region unreadable near level-0 box "
                f"({box[:, 0].min():.0f}, {box[:, 1].min():.0f}, {box[:, 2].max():.0f}, {box[:, 3].max():.0f}): "
                f"{reason}"
            ) from error

    @property
    def pixels_read(self) -> int | None:
        """Level pixels the loader threads fetched from the backend (None when a backend does not count)."""
        counts = [getattr(h, "pixels_read", None) for h in self._handles]
        if not counts or any(c is None for c in counts):
            return None
        return sum(int(c) for c in counts if c is not None)

    def close(self) -> None:
        """Close every loader thread's slide handle."""
        for handle in self._handles:
            handle.close()

    def __enter__(self) -> ChunkReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def lower_priority(nice: int) -> None:
    """Thread initializer: lower this thread's scheduling priority by ``nice`` (Linux only; best effort)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError:  # not permitted or not supported: keep the default priority
        log.debug("could not lower the priority of the loader thread")


def prefetch(
    pool: ThreadPoolExecutor, read: ChunkReader, chunks: list[np.ndarray], depth: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(tile indices, patches)`` per chunk in order, keeping ``depth`` reads in flight."""
    pending: deque[tuple[np.ndarray, Future[np.ndarray]]] = deque()
    it = iter(chunks)
    try:
        for index in it:
            pending.append((index, pool.submit(read, index)))
            if len(pending) >= depth:
                break
        while pending:
            index, fut = pending.popleft()
            patches = fut.result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(read, nxt)))
            yield index, patches
    finally:
        for _, fut in pending:
            fut.cancel()


def read_chunks(
    reader: ChunkReader, threads: int, depth: int, nice: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(tile indices, patches)`` for every chunk of ``reader.tiling``, read by ``threads`` loader threads."""
    with ThreadPoolExecutor(
        threads, thread_name_prefix="mrseg-read", initializer=lower_priority, initargs=(nice,)
    ) as pool:
        yield from prefetch(pool, reader, reader.tiling.chunks(), depth)


__all__ = ["ChunkReader", "lower_priority", "prefetch", "read_chunks"]
