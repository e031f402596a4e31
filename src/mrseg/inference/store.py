"""A sparse 2-D array on disk, square chunk by chunk: where the merged probability maps live.

:class:`ChunkStore` keeps only the chunks written to it, in one scratch file (``pwrite`` /
``pread``: nothing is memory mapped, so reading or writing never grows the process's resident
memory); every other pixel reads as :attr:`ChunkStore.fill_value`. It slices like a numpy array
(``store[y0:y1, x0:x1]``, ``store[y]``, ``store[:]``) and says which regions hold only the fill
value (:meth:`ChunkStore.region_is_fill`), so the pyramidal TIFF writer reads and encodes only
the chunks a slide's tissue touched (:func:`mrseg.wsi.pyramid_tiles.fill_grid`).
"""

from __future__ import annotations

import os
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np


def _range(key: Any, length: int) -> tuple[int, int, int, bool]:
    """``(start, stop, step, squeeze)`` of one index (int or slice) along an axis of ``length``."""
    if isinstance(key, slice):
        start, stop, step = key.indices(length)
        return start, max(start, stop), step, False
    index = int(key)
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError(f"index {key} out of range for length {length}")
    return index, index + 1, 1, True


class ChunkStore:
    """A ``(height, width)`` array stored as ``chunk x chunk`` chunks in a scratch file; unwritten chunks are fill.

    Parameters
    ----------
    path
        The scratch file (created; removed by :meth:`close` or with its folder).
    shape
        ``(height, width)`` in pixels.
    chunk
        Chunk edge in pixels (edge chunks are cut to the array).
    dtype, fill_value
        Pixel type and the value of every pixel no chunk was written for.

    Chunk ``(cy, cx)`` covers rows ``cy * chunk ...`` and columns ``cx * chunk ...``. It is
    thread-safe for writes of distinct chunks and any reads.
    """

    def __init__(
        self, path: str | os.PathLike[str], shape: tuple[int, int], chunk: int, dtype: Any, fill_value: Any = 0
    ) -> None:
        self.path = Path(path)
        self.shape = (int(shape[0]), int(shape[1]))
        self.chunk = int(chunk)
        self.dtype = np.dtype(dtype)
        self.fill_value = fill_value
        self.ndim = 2
        self.grid = (-(-self.shape[0] // self.chunk), -(-self.shape[1] // self.chunk))
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self._closer = weakref.finalize(self, os.close, self._fd)  # closed when the store is garbage-collected
        self._offsets: dict[tuple[int, int], int] = {}
        self._written = np.zeros(self.grid, dtype=bool)
        self._size = 0
        self._lock = threading.Lock()

    def extent(self, cy: int, cx: int) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` pixels of chunk ``(cy, cx)``."""
        y0, x0 = cy * self.chunk, cx * self.chunk
        return y0, min(self.shape[0], y0 + self.chunk), x0, min(self.shape[1], x0 + self.chunk)

    def write_chunk(self, cy: int, cx: int, data: np.ndarray) -> None:
        """Store chunk ``(cy, cx)``; ``data`` has exactly the chunk's extent (rewriting a chunk replaces it)."""
        y0, y1, x0, x1 = self.extent(cy, cx)
        values = np.ascontiguousarray(data, dtype=self.dtype)
        if values.shape != (y1 - y0, x1 - x0):
            raise ValueError(f"chunk ({cy}, {cx}) is {(y1 - y0, x1 - x0)} pixels, got data of shape {values.shape}")
        with self._lock:
            offset = self._offsets.get((cy, cx))
            if offset is None:
                offset, self._size = self._size, self._size + values.nbytes
                self._offsets[(cy, cx)] = offset
        os.pwrite(self._fd, values.tobytes(), offset)
        self._written[cy, cx] = True

    def read_chunk(self, cy: int, cx: int) -> np.ndarray | None:
        """Chunk ``(cy, cx)``, or None when it was never written (all fill)."""
        offset = self._offsets.get((cy, cx))
        if offset is None:
            return None
        y0, y1, x0, x1 = self.extent(cy, cx)
        count = (y1 - y0) * (x1 - x0) * self.dtype.itemsize
        return np.frombuffer(os.pread(self._fd, count, offset), dtype=self.dtype).reshape(y1 - y0, x1 - x0)

    @property
    def chunks_written(self) -> int:
        """Number of chunks stored."""
        return len(self._offsets)

    def region_is_fill(self, y0: int, y1: int, x0: int, x1: int) -> bool:
        """True when no written chunk meets rows ``[y0, y1)`` x columns ``[x0, x1)`` (all its pixels are fill)."""
        c = self.chunk
        return not self._written[y0 // c : -(-y1 // c), x0 // c : -(-x1 // c)].any()

    def __getitem__(self, key: Any) -> np.ndarray:
        rows, cols = key if isinstance(key, tuple) else (key, slice(None))
        ry0, ry1, ry_step, squeeze_y = _range(rows, self.shape[0])
        rx0, rx1, rx_step, squeeze_x = _range(cols, self.shape[1])
        out = np.full((ry1 - ry0, rx1 - rx0), self.fill_value, dtype=self.dtype)
        if out.size and not self.region_is_fill(ry0, ry1, rx0, rx1):
            c = self.chunk
            for cy, cx in np.argwhere(self._written[ry0 // c : -(-ry1 // c), rx0 // c : -(-rx1 // c)]):
                self._copy_chunk(out, ry0 // c + int(cy), rx0 // c + int(cx), ry0, rx0)
        out = out[::ry_step, ::rx_step]
        if squeeze_y:
            out = out[0]
        if squeeze_x:
            out = out[..., 0]
        return out

    def _copy_chunk(self, out: np.ndarray, cy: int, cx: int, ry0: int, rx0: int) -> None:
        data = self.read_chunk(cy, cx)
        if data is None:
            return
        y0, y1, x0, x1 = self.extent(cy, cx)
        oy0, oy1 = max(y0, ry0), min(y1, ry0 + out.shape[0])
        ox0, ox1 = max(x0, rx0), min(x1, rx0 + out.shape[1])
        out[oy0 - ry0 : oy1 - ry0, ox0 - rx0 : ox1 - rx0] = data[oy0 - y0 : oy1 - y0, ox0 - x0 : ox1 - x0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        values = self[:, :]
        return values if dtype is None else values.astype(dtype)

    def close(self) -> None:
        """Close and remove the scratch file (reading afterwards fails)."""
        if self._closer.alive:
            self._closer()
            self.path.unlink(missing_ok=True)


__all__ = ["ChunkStore"]
