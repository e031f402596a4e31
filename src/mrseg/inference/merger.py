"""Merging: blend overlapping tile predictions into an on-disk probability map.

Whole-slide inference cuts a slide into overlapping tiles; their predictions are merged by a
:class:`Merger`, the abstract class of MONAI's ``monai/inferers/merger.py``: ``aggregate(batch,
boxes)`` for every batch, then ``finalize()`` once. :class:`OnDiskMerger` keeps the weighted sum
of probabilities and the sum of weights per square chunk of the map, in memory only while tiles
still arrive for that chunk: told the boxes of every tile to come (``expected``), it divides and
encodes a chunk as soon as its last tile is in and writes it to the map's
:class:`~mrseg.inference.store.ChunkStore` (only chunks some tile touched are ever stored); beyond
a memory budget, the least recently used sums go to a scratch file until needed again. Memory is
thus bounded by the tiles in flight, not by the slide. Each tile is weighted by a ramp that is
highest in its centre and falls towards its edges (linear or Gaussian), so overlaps blend
smoothly instead of showing seams.

All boxes here are in **map pixels**: pixels of the probability map at the model's finest mpp,
origin at the top-left of the slide, ``(x0, y0, x1, y1)`` with ``x1``/``y1`` exclusive.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mrseg.core.encoding import ProbabilityEncoding
from mrseg.inference.settings import Ramp
from mrseg.inference.store import ChunkStore

log = logging.getLogger(__name__)

#: Smallest blending weight: tiles never weigh exactly zero, so a pixel covered by a single tile
#: edge (the slide border) still gets that tile's value.
MIN_WEIGHT = 1e-3


@lru_cache(maxsize=16)
def _ramp_1d(size: int, ramp: Ramp) -> np.ndarray:
    centres = (np.arange(size, dtype=np.float64) + 0.5) / size  # in (0, 1)
    if ramp is Ramp.CONSTANT:
        w = np.ones(size)
    elif ramp is Ramp.LINEAR:
        w = 1.0 - np.abs(2.0 * centres - 1.0)  # triangle: ~0 at the edges, 1 in the centre
    else:  # Gaussian with sigma = size / 8 (MONAI's default sigma_scale 0.125)
        w = np.exp(-0.5 * ((centres - 0.5) / 0.125) ** 2)
    return w


def tile_weight(height: int, width: int, ramp: Ramp | str = Ramp.LINEAR) -> np.ndarray:
    """Return the ``(height, width)`` float32 blending weight of one tile (separable, max 1, min ``MIN_WEIGHT``)."""
    r = Ramp(ramp)
    return np.maximum(np.outer(_ramp_1d(height, r), _ramp_1d(width, r)), MIN_WEIGHT).astype(np.float32)


@dataclass
class ProbabilityMap:
    """The merged map: one on-disk ``(H, W)`` array per foreground class, at ``mpp`` microns per map pixel.

    ``channels[k - 1]`` is the probability of class ``k`` (``1 .. C-1`` of the label spec; one
    channel for a binary task), in ``encoding`` (:class:`~mrseg.core.encoding.ProbabilityEncoding`).
    The arrays are :class:`~mrseg.inference.store.ChunkStore` arrays: slice them (``channels[0][y0:y1]``)
    to read numpy strips; only the chunks some tile touched are stored. Map pixel ``(u, v)`` covers
    level-0 ``[u*d, (u+1)*d) x [v*d, (v+1)*d)`` with ``d = mpp / slide mpp``.
    """

    channels: list[Any]
    mpp: float
    encoding: ProbabilityEncoding

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in map pixels."""
        return tuple(int(s) for s in self.channels[0].shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        """numpy dtype of the stored values."""
        return self.encoding.numpy_dtype

    def to_probability(self, values: np.ndarray) -> np.ndarray:
        """Convert stored values to float32 probabilities in [0, 1]."""
        return self.encoding.decode(values)

    def foreground(self) -> Any:
        """Array-like ``(H, W)`` foreground probability (stored values): channel 0, or ``1 - P(background)``.

        With several classes it is the clipped sum of the class channels, computed strip by strip.
        """
        return self.channels[0] if len(self.channels) == 1 else _MapView(self, _foreground, self.dtype)

    def labels(self) -> Any:
        """Array-like ``(H, W)`` ``uint8`` label map: the most probable class per map pixel, 0 = background.

        ``P(background) = 1 - sum of the class probabilities``; ties go to the lower label.
        Pixels no tile covered are background.
        """
        return _MapView(self, _argmax, np.dtype(np.uint8))

    def close(self) -> None:
        """Release the channels' scratch files (the map cannot be read afterwards)."""
        for channel in self.channels:
            close = getattr(channel, "close", None)
            if close is not None:
                close()


class _MapView:
    """Array-like ``(H, W)`` view computed from all channels of a map, region by region (for strip readers).

    Where no channel holds anything the view is 0 (background, probability 0), which
    :meth:`region_is_fill` reports so that writers skip those regions.
    """

    fill_value = 0

    def __init__(self, pmap: ProbabilityMap, combine: Any, dtype: np.dtype) -> None:
        self._pmap, self._combine = pmap, combine
        self.shape, self.dtype, self.ndim = pmap.shape, dtype, 2

    def region_is_fill(self, y0: int, y1: int, x0: int, x1: int) -> bool:
        """True when every channel holds only its fill (0) in rows ``[y0, y1)`` x columns ``[x0, x1)``."""
        return all(
            hasattr(c, "region_is_fill") and c.region_is_fill(y0, y1, x0, x1) and c.fill_value == 0
            for c in self._pmap.channels
        )

    def __getitem__(self, key: Any) -> np.ndarray:
        probs = np.stack([self._pmap.to_probability(np.asarray(c[key])) for c in self._pmap.channels])
        return np.asarray(self._combine(probs, self._pmap.encoding))


def _foreground(probs: np.ndarray, encoding: ProbabilityEncoding) -> np.ndarray:
    return encoding.encode(np.asarray(sum(probs), dtype=np.float32))


def _argmax(probs: np.ndarray, encoding: ProbabilityEncoding) -> np.ndarray:
    background = 1.0 - probs.sum(axis=0, keepdims=True)
    return np.argmax(np.concatenate([background, probs]), axis=0).astype(np.uint8)


class Merger(ABC):
    """Accumulates tile predictions and produces the merged map (MONAI's ``Merger``).

    The inferer calls :meth:`aggregate` for every batch and :meth:`finalize` once.
    """

    @abstractmethod
    def aggregate(self, batch: np.ndarray, boxes: np.ndarray | Sequence[Sequence[int]]) -> None:
        """Add ``batch`` (float ``(N, C, h, w)`` probabilities) at ``boxes`` (``(N, 4)`` map pixels)."""

    @abstractmethod
    def finalize(self) -> ProbabilityMap:
        """Return the merged map; no more :meth:`aggregate` calls after this."""


class OnDiskMerger(Merger):
    """Weighted-average merger writing a sparse on-disk map chunk by chunk (see the module docstring).

    Parameters
    ----------
    workdir
        Folder for the map's chunk stores and spilled sums (created; the caller removes it with the
        slide's scratch folder).
    shape
        ``(height, width)`` of the map in map pixels.
    channels
        Number of probability channels ``C``.
    mpp
        Microns per map pixel (recorded on the result).
    ramp
        Blending weight shape (see :class:`Ramp`).
    chunk
        Edge of the chunks in map pixels.
    out_dtype
        Encoding of the stored probabilities: ``uint8`` (default, probability x 255) or ``float16``.
    expected
        ``(n, 4)`` boxes of every tile that will be aggregated (any order): a chunk is finished as
        soon as its last tile is in. None: chunks are finished by :meth:`finalize`.
    memory_bytes
        Most bytes of sums kept in memory; beyond it the least recently used chunks are spilled.

    Notes
    -----
    Every pixel's sums are added tile after tile in the order of the :meth:`aggregate` calls, and
    divided once, so the map does not depend on ``chunk``, ``expected`` or ``memory_bytes``.
    Boxes may extend beyond the map (tiles at the slide border); the outside part is dropped.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        shape: tuple[int, int],
        channels: int = 1,
        *,
        mpp: float = 1.0,
        ramp: Ramp | str = Ramp.LINEAR,
        chunk: int = 512,
        out_dtype: str | np.dtype = "uint8",
        expected: np.ndarray | None = None,
        memory_bytes: int = 256 * 2**20,
    ) -> None:
        self.workdir = Path(workdir)
        (self.workdir / "spill").mkdir(parents=True, exist_ok=True)
        self.height, self.width = (int(shape[0]), int(shape[1]))
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"map shape must be positive, got {shape}")
        self.channels = int(channels)
        self.mpp = float(mpp)
        self.ramp = Ramp(ramp)
        self.chunk = int(chunk)
        self.encoding = ProbabilityEncoding.of(out_dtype)
        self.memory_bytes = int(memory_bytes)
        self._out = [
            ChunkStore(self.workdir / f"channel{k}.chunks", shape, self.chunk, self.encoding.numpy_dtype)
            for k in range(self.channels)
        ]
        grid = self._out[0].grid
        self._sums: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()  # channels 0..C-1 sums, C: weights
        self._spilled: set[tuple[int, int]] = set()
        self._finished = np.zeros(grid, dtype=bool)
        self._pending = None if expected is None else self._count_expected(np.asarray(expected), grid)
        self.tiles_aggregated = 0
        self.chunks_spilled = 0
        self._finalized = False

    # -- bookkeeping of chunks --------------------------------------------------------------------

    def _chunk_ranges(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """First and last chunk row and column each box meets (boxes already inside the map)."""
        c = self.chunk
        x0, y0 = np.maximum(boxes[:, 0], 0), np.maximum(boxes[:, 1], 0)
        x1, y1 = np.minimum(boxes[:, 2], self.width), np.minimum(boxes[:, 3], self.height)
        return y0 // c, (y1 - 1) // c, x0 // c, (x1 - 1) // c

    def _count_expected(self, boxes: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
        pending = np.zeros(grid, dtype=np.int64)
        boxes = self._inside(boxes.astype(np.int64).reshape(-1, 4))
        if len(boxes):
            cy0, cy1, cx0, cx1 = self._chunk_ranges(boxes)
            for dy in range(int((cy1 - cy0).max()) + 1):
                for dx in range(int((cx1 - cx0).max()) + 1):
                    ok = (cy0 + dy <= cy1) & (cx0 + dx <= cx1)
                    np.add.at(pending, (cy0[ok] + dy, cx0[ok] + dx), 1)
        return pending

    def _inside(self, boxes: np.ndarray) -> np.ndarray:
        keep = (boxes[:, 2] > 0) & (boxes[:, 3] > 0) & (boxes[:, 0] < self.width) & (boxes[:, 1] < self.height)
        return boxes[keep]

    def _sums_of(self, key: tuple[int, int]) -> np.ndarray:
        """The sums of chunk ``key`` (created, or read back from the spill), most recently used."""
        if self._finished[key]:
            raise RuntimeError(f"a tile arrived for map chunk {key} after its expected tiles were all merged")
        sums = self._sums.pop(key, None)
        if sums is None and key in self._spilled:
            spill = self._spill_path(key)
            sums = np.load(spill)
            spill.unlink()
            self._spilled.discard(key)
        if sums is None:
            y0, y1, x0, x1 = self._out[0].extent(*key)
            sums = np.zeros((self.channels + 1, y1 - y0, x1 - x0), dtype=np.float32)
        self._sums[key] = sums
        return sums

    def _spill_path(self, key: tuple[int, int]) -> Path:
        return self.workdir / "spill" / f"{key[0]}_{key[1]}.npy"

    def _limit_memory(self) -> None:
        used = sum(s.nbytes for s in self._sums.values())
        while used > self.memory_bytes and len(self._sums) > 1:
            key, sums = self._sums.popitem(last=False)
            np.save(self._spill_path(key), sums)
            self._spilled.add(key)
            self.chunks_spilled += 1
            used -= sums.nbytes

    def _finish(self, key: tuple[int, int]) -> None:
        """Divide chunk ``key``'s sums by its weights, encode and store it (pixels no tile covered stay 0)."""
        sums = self._sums.pop(key, None)
        if sums is None and key in self._spilled:
            sums = np.load(self._spill_path(key))
            self._spill_path(key).unlink()
            self._spilled.discard(key)
        self._finished[key] = True
        if sums is None:
            return
        weights = sums[self.channels]
        covered = weights > 0
        if not covered.any():
            return  # nothing is written for empty chunks: they read as 0
        safe = np.where(covered, weights, 1.0)
        for k in range(self.channels):
            prob = np.where(covered, sums[k] / safe, 0.0)
            self._out[k].write_chunk(*key, self.encoding.encode(prob))

    # -- the Merger interface ----------------------------------------------------------------------

    def aggregate(self, batch: np.ndarray, boxes: np.ndarray | Sequence[Sequence[int]]) -> None:
        """Blend ``batch`` (float ``(N, C, h, w)``, probabilities) into the map at ``boxes``.

        ``boxes[i] = (x0, y0, x1, y1)`` in map pixels with ``x1 - x0 == w`` and ``y1 - y0 == h``.
        """
        if self._finalized:
            raise RuntimeError("merger already finalized")
        batch = np.asarray(batch, dtype=np.float32)
        boxes_arr = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        if batch.ndim != 4 or batch.shape[0] != len(boxes_arr) or batch.shape[1] != self.channels:
            raise ValueError(
                f"expected batch (N, {self.channels}, h, w) matching {len(boxes_arr)} boxes, got {batch.shape}"
            )
        h, w = batch.shape[2:]
        if np.any(boxes_arr[:, 2] - boxes_arr[:, 0] != w) or np.any(boxes_arr[:, 3] - boxes_arr[:, 1] != h):
            raise ValueError(f"boxes must all be {w}x{h} to match the batch")
        weight = tile_weight(h, w, self.ramp)
        for tile, box in zip(batch, boxes_arr, strict=True):
            if box[2] > 0 and box[3] > 0 and box[0] < self.width and box[1] < self.height:
                self._add(tile, box, weight)

    def _add(self, tile: np.ndarray, box: np.ndarray, weight: np.ndarray) -> None:
        x0, y0, x1, y1 = (int(v) for v in box)
        cy0, cy1, cx0, cx1 = (int(v[0]) for v in self._chunk_ranges(box[None]))
        for cy in range(cy0, cy1 + 1):
            for cx in range(cx0, cx1 + 1):
                sums = self._sums_of((cy, cx))
                ky0, ky1, kx0, kx1 = self._out[0].extent(cy, cx)
                # Intersection of the tile with the chunk, in chunk and in tile coordinates.
                iy0, iy1, ix0, ix1 = max(y0, ky0), min(y1, ky1), max(x0, kx0), min(x1, kx1)
                ts = (slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))
                cs = (slice(iy0 - ky0, iy1 - ky0), slice(ix0 - kx0, ix1 - kx0))
                wt = weight[ts]
                sums[(slice(0, self.channels), *cs)] += tile[(slice(None), *ts)] * wt
                sums[(self.channels, *cs)] += wt
        self.tiles_aggregated += 1
        if self._pending is not None:
            block = self._pending[cy0 : cy1 + 1, cx0 : cx1 + 1]
            block -= block > 0
            for dy, dx in np.argwhere(block == 0):
                key = (cy0 + int(dy), cx0 + int(dx))
                if not self._finished[key]:
                    self._finish(key)
        self._limit_memory()

    def finalize(self) -> ProbabilityMap:
        """Finish every chunk still open and return the map (pixels no tile covered are 0)."""
        self._finalized = True
        for key in [*self._sums, *sorted(self._spilled)]:
            self._finish(key)
        return ProbabilityMap(channels=list(self._out), mpp=self.mpp, encoding=self.encoding)
