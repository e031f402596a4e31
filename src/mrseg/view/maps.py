"""Probability maps laid over their slide: the pyramidal TIFFs of ``mrseg predict`` read on any read grid.

A map of ``(H, W)`` pixels whose pixel covers ``d = map_mpp / slide_mpp`` level-0 pixels lies on
:meth:`ReadGrid.of_map <mrseg.wsi.geometry.ReadGrid.of_map>` (origin at the slide's top-left corner);
its reduced level ``k`` (2x2 means, sizes rounded up) has pixels of ``d * 2**k`` level-0 pixels. A
request on a read grid (a Deep Zoom tile) takes the coarsest level whose pixels are no larger than
the request's, and samples it at the request's pixel centres (nearest): every output pixel shows
the map pixel that contains its centre, so a map is aligned to the slide exactly, whatever its mpp.
Only the map tiles a request touches are decoded (tifffile's zarr view).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from mrseg.core.encoding import ProbabilityEncoding
from mrseg.core.errors import DataError
from mrseg.wsi.geometry import LEVEL_TOLERANCE, ReadGrid, sample_nearest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MapLevel:
    """One pyramid level of a map TIFF: its array (zarr, sliced lazily) and the grid it lies on."""

    array: Any
    grid: ReadGrid


class MapRaster:
    """An open probability-map TIFF (one handle: use it from one thread at a time).

    Parameters
    ----------
    path
        The TIFF written by ``mrseg predict`` (``uint8`` = p x 255 or ``float16``).
    pixel_l0
        Level-0 pixels per map pixel (``map_mpp / slide_mpp`` of the prediction record).

    Raises
    ------
    DataError
        Not a readable TIFF, or not a single-channel map.
    """

    def __init__(self, path: Path, pixel_l0: float) -> None:
        self.path = path
        try:
            self._tiff = tifffile.TiffFile(path)
            series = self._tiff.series[0]
            arrays: list[Any] = [zarr.open(series.aszarr(level=i), mode="r") for i in range(len(series.levels))]
        except Exception as error:  # tifffile and zarr raise many kinds
            raise DataError(f"{path}: cannot read the probability map: {error}") from None
        if arrays[0].ndim != 2:
            self.close()
            raise DataError(f"{path}: a probability map has one channel, got shape {arrays[0].shape}")
        h0, w0 = (int(s) for s in arrays[0].shape)
        self.shape: tuple[int, int] = (h0, w0)
        self.encoding = ProbabilityEncoding.of(arrays[0].dtype)
        self.levels: list[MapLevel] = []
        for k, array in enumerate(arrays):
            self.levels.append(
                MapLevel(array, ReadGrid.of_map(array.shape, pixel_l0 * level_factor((h0, w0), array.shape, k)))
            )

    def close(self) -> None:
        self._tiff.close()

    def level_for(self, pixel_l0: float) -> MapLevel:
        """The coarsest level whose pixels are at most ``pixel_l0`` level-0 pixels (level 0 if none)."""
        best = self.levels[0]
        for level in self.levels:
            if level.grid.scale[0] <= pixel_l0 * (1 + LEVEL_TOLERANCE):
                best = level
        return best

    def values(self, grid: ReadGrid) -> np.ndarray:
        """Stored values ``(height, width)`` of the map at the pixel centres of ``grid`` (0 outside the map)."""
        level = self.level_for(min(grid.scale))
        return sample_nearest(level.array, level.grid, grid, fill=0)

    def probability_at(self, x_l0: float, y_l0: float) -> float | None:
        """The probability of the map pixel containing level-0 point ``(x, y)`` (None outside the map)."""
        level = self.levels[0]
        cols, rows = level.grid.index_of(np.array([x_l0]), np.array([y_l0]))
        c, r = int(cols[0]), int(rows[0])
        if not (0 <= r < self.shape[0] and 0 <= c < self.shape[1]):
            return None
        return float(self.encoding.decode(np.asarray(level.array[r, c]))[()])

    def overview(self, max_side: int) -> tuple[np.ndarray, ReadGrid]:
        """The finest whole level with both sides at most ``max_side`` (the coarsest if none): values and grid."""
        chosen = self.levels[-1]
        for level in self.levels:
            if max(level.grid.size_px) <= max_side:
                chosen = level
                break
        return np.asarray(chosen.array[:]), chosen.grid


def level_factor(shape0: tuple[int, int], shape_k: tuple[int, ...], k: int) -> float:
    """Map pixels per pixel of level ``k``: ``2**k`` when halved rounding up (as mrseg writes them), else the ratio."""
    if all(-(-n // 2**k) == m for n, m in zip(shape0, shape_k[:2], strict=True)):
        return float(2**k)
    return shape0[1] / shape_k[1]


def check_map_fits(shape_hw: tuple[int, int], pixel_l0: float, dimensions_l0: tuple[int, int], what: str) -> None:
    """Raise :class:`DataError` unless a ``shape_hw`` map of ``pixel_l0`` covers the slide to within a map pixel.

    ``mrseg predict`` makes maps ``round(W0 / d) x round(H0 / d)`` pixels, so ``W * d`` differs from ``W0``
    by at most half a map pixel; a larger gap means the map belongs to another slide or resolution.
    """
    h, w = shape_hw
    w0, h0 = dimensions_l0
    if abs(w * pixel_l0 - w0) > pixel_l0 or abs(h * pixel_l0 - h0) > pixel_l0:
        raise DataError(
            f"{what}: a {w}x{h} map of {pixel_l0:g} level-0 px per pixel covers {w * pixel_l0:g}x{h * pixel_l0:g} "
            f"level-0 px, but the slide is {w0}x{h0}: the map does not match its slide"
        )


__all__ = ["MapLevel", "MapRaster", "check_map_fits"]
