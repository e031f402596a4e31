"""Merging: blend overlapping tile predictions into an on-disk probability map.

Whole-slide inference cuts a slide into overlapping tiles; their predictions are merged by a
:class:`Merger`, the abstract class of MONAI's ``monai/inferers/merger.py``: ``aggregate(batch,
boxes)`` for every batch, then ``finalize()`` once. :class:`OnDiskMerger` keeps the weighted sum
of probabilities and the sum of weights in a chunked **zarr** array on disk, so memory stays bounded whatever the slide
size (reads and writes go through file I/O, not memory maps, so they never pile up in the
process's resident set). Each tile is weighted by a ramp that is highest in its centre and falls
towards its edges (linear or Gaussian), so overlaps blend smoothly instead of showing seams.

All boxes here are in **map pixels**: pixels of the probability map at the model's finest mpp,
origin at the top-left of the slide, ``(x0, y0, x1, y1)`` with ``x1``/``y1`` exclusive.
"""

from __future__ import annotations

import logging
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from mrseg.core.encoding import ProbabilityEncoding
from mrseg.inference.settings import Ramp

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
    The arrays are zarr arrays: slice them (``channels[0][y0:y1]``) to read numpy strips. Map pixel
    ``(u, v)`` covers level-0 ``[u*d, (u+1)*d) x [v*d, (v+1)*d)`` with ``d = mpp / slide mpp``.
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


class _MapView:
    """Array-like ``(H, W)`` view computed from all channels of a map, region by region (for strip readers)."""

    def __init__(self, pmap: ProbabilityMap, combine: Any, dtype: np.dtype) -> None:
        self._pmap, self._combine = pmap, combine
        self.shape, self.dtype, self.ndim = pmap.shape, dtype, 2

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
    """Weighted-average merger backed by a zarr array on disk.

    Parameters
    ----------
    workdir
        Folder for the scratch arrays (created; the caller removes it with the slide's scratch folder).
    shape
        ``(height, width)`` of the map in map pixels.
    channels
        Number of probability channels ``C``.
    mpp
        Microns per map pixel (recorded on the result).
    ramp
        Blending weight shape (see :class:`Ramp`).
    chunk
        Edge of the on-disk chunks in map pixels.
    out_dtype
        Encoding of the stored probabilities: ``uint8`` (default, probability x 255) or ``float16``.

    Notes
    -----
    Each :meth:`aggregate` call reads the bounding region of its boxes once, adds every tile in
    memory and writes the region back, so a batch of neighbouring tiles costs one read and one
    write. Widely scattered batches are split into per-tile updates to keep memory small.
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
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.height, self.width = (int(shape[0]), int(shape[1]))
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"map shape must be positive, got {shape}")
        self.channels = int(channels)
        self.mpp = float(mpp)
        self.ramp = Ramp(ramp)
        self.chunk = int(chunk)
        self.encoding = ProbabilityEncoding.of(out_dtype)
        # Channel 0..C-1: weighted probability sums; channel C: sum of weights.
        self._acc = zarr.create_array(
            store=str(self.workdir / "accumulator.zarr"),
            shape=(self.channels + 1, self.height, self.width),
            chunks=(self.channels + 1, self.chunk, self.chunk),
            dtype="float32",
            fill_value=0.0,
            compressors=None,
            overwrite=True,
        )
        self.tiles_aggregated = 0
        self._finalized = False

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
        if len(boxes_arr) == 0:
            return
        # Clip the group's bounding region to the map; skip tiles entirely outside.
        inside = (
            (boxes_arr[:, 2] > 0)
            & (boxes_arr[:, 3] > 0)
            & (boxes_arr[:, 0] < self.width)
            & (boxes_arr[:, 1] < self.height)
        )
        batch, boxes_arr = batch[inside], boxes_arr[inside]
        if len(boxes_arr) == 0:
            return
        rx0, ry0 = max(0, int(boxes_arr[:, 0].min())), max(0, int(boxes_arr[:, 1].min()))
        rx1, ry1 = min(self.width, int(boxes_arr[:, 2].max())), min(self.height, int(boxes_arr[:, 3].max()))
        region_area = (rx1 - rx0) * (ry1 - ry0)
        if len(boxes_arr) > 1 and region_area > 4 * len(boxes_arr) * h * w:
            for i in range(len(boxes_arr)):  # scattered tiles: one small update each
                self.aggregate(batch[i : i + 1], boxes_arr[i : i + 1])
            return
        weight = tile_weight(h, w, self.ramp)
        region = np.asarray(self._acc[:, ry0:ry1, rx0:rx1])
        for tile, (x0, y0, x1, y1) in zip(batch, boxes_arr, strict=True):
            # Intersection of the tile with the region, in region and in tile coordinates.
            cx0, cy0, cx1, cy1 = max(x0, rx0), max(y0, ry0), min(x1, rx1), min(y1, ry1)
            ts = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
            rs = (slice(cy0 - ry0, cy1 - ry0), slice(cx0 - rx0, cx1 - rx0))
            wt = weight[ts]
            region[(slice(0, self.channels), *rs)] += tile[(slice(None), *ts)] * wt
            region[(self.channels, *rs)] += wt
        self._acc[:, ry0:ry1, rx0:rx1] = region
        self.tiles_aggregated += len(boxes_arr)

    def finalize(self) -> ProbabilityMap:
        """Divide the sums by the weights strip by strip into per-channel on-disk arrays.

        Pixels no tile covered (outside the tissue) are 0.
        """
        self._finalized = True
        out = []
        for k in range(self.channels):
            out.append(
                zarr.create_array(
                    store=str(self.workdir / f"channel{k}.zarr"),
                    shape=(self.height, self.width),
                    chunks=(self.chunk, self.chunk),
                    dtype=self.encoding.numpy_dtype,
                    fill_value=0,
                    overwrite=True,
                )
            )
        step_x = self.chunk * 8  # blocks of 8 chunks bound memory for any slide width
        for y in range(0, self.height, self.chunk):
            for x in range(0, self.width, step_x):
                block = np.asarray(self._acc[:, y : y + self.chunk, x : x + step_x])
                weights = block[self.channels]
                covered = weights > 0
                if not covered.any():
                    continue  # leave the fill value; nothing is written for empty blocks
                safe = np.where(covered, weights, 1.0)
                for k in range(self.channels):
                    prob = np.where(covered, block[k] / safe, 0.0)
                    out[k][y : y + self.chunk, x : x + step_x] = self.encoding.encode(prob)
        shutil.rmtree(self.workdir / "accumulator.zarr", ignore_errors=True)
        return ProbabilityMap(channels=out, mpp=self.mpp, encoding=self.encoding)
