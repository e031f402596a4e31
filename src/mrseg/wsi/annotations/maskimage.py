"""Label-mask images (TIFF, pyramidal TIFF, PNG) as annotations, read lazily.

A mask may be stored at any scale of the slide: its scale is the slide's level-0 size divided by
the mask's size (snapped to the integer downsample when the two differ by less than one mask pixel,
as pyramid levels are rounded). TIFF masks are read through ``tifffile``'s zarr view, one pyramid
level at a time and only the tiles a request touches, so a CAMELYON-sized mask is never loaded whole.
PNG masks cannot be read in parts and are loaded whole (keep them small).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr
from PIL import Image

from mrseg.core.errors import AnnotationError
from mrseg.wsi.annotations.base import Annotations, LabelStats
from mrseg.wsi.geometry import Box, ReadGrid, Size, to_grid

log = logging.getLogger(__name__)

STATS_MAX_PIXELS = 1 << 25
"""Labels, bounds, areas and sampling candidates come from the finest level with at most this many pixels."""

PNG_MAX_PIXELS = 1 << 28

MASK_ASPECT_TOLERANCE = 0.02
"""Largest relative difference of a mask's x and y scale onto its slide (a mask of another shape is refused)."""
_MAX_SAMPLE_ROUNDS = 100


def _downsample(slide_size: int, mask_size: int) -> float:
    """Level-0 pixels per mask pixel along one axis, snapped to an integer within one mask pixel."""
    ratio = slide_size / mask_size
    whole = max(1, round(ratio))
    return float(whole) if abs(slide_size - whole * mask_size) < whole else ratio


class MaskAnnotations(Annotations):
    """Annotations given as a label image (0 background, positive values = labels).

    Parameters
    ----------
    path
        TIFF (single page or pyramidal) or PNG file.
    slide_dimensions
        ``(width, height)`` of the slide's level 0; the mask's scale is derived from it. When None
        the mask is taken to be at the slide's full resolution.
    value_map
        Pixel value -> label, applied before anything else (e.g. ``{255: 1}``); unmapped values
        are kept as they are.
    """

    kind = "mask"
    path: Path

    def __init__(
        self,
        path: Path,
        *,
        slide_dimensions: Size | None = None,
        value_map: Mapping[int, int] | None = None,
    ) -> None:
        self.path = path
        self._tiff: Any = None
        self._arrays: list[Any] = []
        self._pid: int | None = None
        self._pixels: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # label -> candidate pixels (stats level)
        try:
            self._open(path)
        except AnnotationError:
            raise
        except Exception as error:  # tifffile/PIL raise many kinds
            self.close()
            raise AnnotationError(f"{path}: cannot read mask image: {error}") from None
        h0, w0 = self._levels[0].shape[:2]
        if slide_dimensions is None:
            log.info("%s: no slide dimensions given; assuming the mask is at the slide's level 0", path.name)
            slide_dimensions = (w0, h0)
        self.slide_dimensions = (int(slide_dimensions[0]), int(slide_dimensions[1]))
        sw, sh = self.slide_dimensions
        self.downsamples: list[tuple[float, float]] = [
            (_downsample(sw, lvl.shape[1]), _downsample(sh, lvl.shape[0])) for lvl in self._levels
        ]
        """Level-0 slide pixels per mask pixel ``(x, y)`` for each mask level."""
        dx, dy = self.downsamples[0]
        if abs(dx - dy) > MASK_ASPECT_TOLERANCE * max(dx, dy):
            self.close()
            raise AnnotationError(
                f"{path}: mask of {w0}x{h0} px does not match the slide's {sw}x{sh} px (it would be stretched "
                f"by {dx:.4g} x {dy:.4g}); is it the mask of another slide?"
            )
        self._lut = np.arange(256, dtype=np.uint8)
        for value, label in (value_map or {}).items():
            if not (0 <= int(value) <= 255 and 0 <= int(label) <= 255):
                raise ValueError(f"mask value map entries must be in [0, 255], got {value!r}: {label!r}")
            self._lut[int(value)] = int(label)

    def _open(self, path: Path) -> None:
        with path.open("rb") as fh:
            magic = fh.read(8)
        if magic.startswith(b"\x89PNG"):
            with Image.open(path) as image:
                if image.width * image.height > PNG_MAX_PIXELS:
                    raise AnnotationError(f"{path}: PNG mask too large to load ({image.width}x{image.height})")
                self._arrays = [np.asarray(image)]
            self._pid = os.getpid()
            return
        self._tiff = tifffile.TiffFile(path)
        series = self._tiff.series[0]
        self._arrays = [zarr.open(series.aszarr(level=i), mode="r") for i in range(len(series.levels))]
        self._pid = os.getpid()

    @property
    def _levels(self) -> list[Any]:
        """The level arrays, reopened after a fork or unpickling (a file handle must not be shared)."""
        if self._pid != os.getpid():
            self._tiff = None  # the parent's handle: leave it to the parent
            self._open(self.path)
        return self._arrays

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._tiff is not None or self._pid is None:
            state.update(_tiff=None, _arrays=[], _pid=None)
        return state

    def close(self) -> None:
        if self._tiff is not None and self._pid == os.getpid():
            self._tiff.close()
        self._tiff = None
        self._pid = None
        self._arrays = []

    # --------------------------------------------------------------------------------- pixel access
    def _as_labels(self, values: np.ndarray, level: int) -> np.ndarray:
        values = np.asarray(values)
        if values.ndim == 3:  # RGB(A) masks: the first channel carries the label
            values = values[..., 0]
        if values.dtype == bool:
            values = values.astype(np.uint8)
        if values.dtype != np.uint8:
            if values.size and (values.min() < 0 or values.max() > 255):
                raise AnnotationError(f"{self.path}: mask level {level} has values outside [0, 255]")
            values = values.astype(np.uint8)
        return np.asarray(self._lut[values])

    def _read(self, level: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Labels at the outer product of sorted unique ``rows`` x ``cols`` of a level."""
        arr = self._levels[level]
        if isinstance(arr, np.ndarray):
            return self._as_labels(arr[np.ix_(rows, cols)], level)
        return self._as_labels(arr.oindex[rows, cols], level)

    def _choose_level(self, sx: float, sy: float) -> int:
        """The coarsest level whose pixels are no larger than an output pixel (level 0 if none)."""
        best = 0
        for i, (dx, dy) in enumerate(self.downsamples):
            if dx <= sx * (1 + 1e-9) and dy <= sy * (1 + 1e-9):
                best = i if dx * dy > self.downsamples[best][0] * self.downsamples[best][1] else best
        return best

    def rasterize(self, box_l0: Sequence[float] | ReadGrid, size_px: Sequence[int] | None = None) -> np.ndarray:
        grid = to_grid(box_l0, size_px)
        sx, sy = grid.scale
        level = self._choose_level(sx, sy)
        dx, dy = self.downsamples[level]
        h, w = self._levels[level].shape[:2]
        xs, ys = grid.centers()
        cols = np.floor(xs / dx).astype(np.int64)
        rows = np.floor(ys / dy).astype(np.int64)
        out = np.zeros(grid.shape, dtype=np.uint8)
        ok_c = (cols >= 0) & (cols < w) & (xs < self.slide_dimensions[0])
        ok_r = (rows >= 0) & (rows < h) & (ys < self.slide_dimensions[1])
        if not ok_c.any() or not ok_r.any():
            return out
        ucols, inv_c = np.unique(cols[ok_c], return_inverse=True)
        urows, inv_r = np.unique(rows[ok_r], return_inverse=True)
        block = self._read(level, urows, ucols)
        out[np.ix_(ok_r, ok_c)] = block[np.ix_(inv_r, inv_c)]
        return out

    # ------------------------------------------------------------------------------------- summary
    @cached_property
    def _stats_level(self) -> int:
        for i, lvl in enumerate(self._levels):
            if lvl.shape[0] * lvl.shape[1] <= STATS_MAX_PIXELS:
                return i
        return len(self._levels) - 1

    @cached_property
    def _stats_image(self) -> np.ndarray:
        level = self._stats_level
        arr = self._levels[level]
        return self._as_labels(arr[...] if not isinstance(arr, np.ndarray) else arr, level)

    @cached_property
    def _counts(self) -> np.ndarray:
        return np.bincount(self._stats_image.ravel(), minlength=256)

    @property
    def labels(self) -> tuple[int, ...]:
        return tuple(int(v) for v in np.flatnonzero(self._counts[1:]) + 1)

    @property
    def bounds_l0(self) -> Box | None:
        image = self._stats_image
        rows = np.flatnonzero(image.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(image.any(axis=0))
        dx, dy = self.downsamples[self._stats_level]
        sw, sh = self.slide_dimensions
        return (
            float(cols[0] * dx),
            float(rows[0] * dy),
            float(min((cols[-1] + 1) * dx, sw)),
            float(min((rows[-1] + 1) * dy, sh)),
        )

    def area_l0(self, label: int) -> float:
        """Area of ``label`` in level-0 px^2, counted at the statistics level (see :data:`STATS_MAX_PIXELS`)."""
        if not 0 < int(label) <= 255:
            return 0.0
        dx, dy = self.downsamples[self._stats_level]
        return float(self._counts[int(label)] * dx * dy)

    def sample_points(self, label: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """Points uniform over the pixels of ``label``.

        Candidates are drawn uniformly inside the label's pixels at the statistics level and, when
        that level is coarser than the mask's level 0, kept only if level 0 agrees (rejection), so
        every returned point carries ``label`` at full mask resolution. Regions too small to appear
        at the statistics level are not sampled.
        """
        if int(label) not in self.labels:
            raise AnnotationError(f"{self.describe()}: no region with label {label} (labels: {list(self.labels)})")
        if n <= 0:
            return np.zeros((0, 2), dtype=np.float64)
        if int(label) not in self._pixels:
            found_rows, found_cols = np.nonzero(self._stats_image == int(label))
            self._pixels[int(label)] = (found_rows, found_cols)
        rows, cols = self._pixels[int(label)]
        dx, dy = self.downsamples[self._stats_level]
        accepted: list[np.ndarray] = []
        missing = n
        for _ in range(_MAX_SAMPLE_ROUNDS):
            m = max(2 * missing, 16)
            pick = rng.integers(0, rows.size, size=m)
            pts = np.column_stack([(cols[pick] + rng.random(m)) * dx, (rows[pick] + rng.random(m)) * dy])
            if self._stats_level != 0:
                pts = pts[self._labels_at(pts) == int(label)]
            accepted.append(pts[:missing])
            missing -= len(accepted[-1])
            if missing == 0:
                return np.concatenate(accepted)
        raise AnnotationError(f"{self.describe()}: could not sample points in label {label}")

    def _labels_at(self, points_l0: np.ndarray) -> np.ndarray:
        dx, dy = self.downsamples[0]
        h, w = self._levels[0].shape[:2]
        cols = np.clip(np.floor(points_l0[:, 0] / dx).astype(np.int64), 0, w - 1)
        rows = np.clip(np.floor(points_l0[:, 1] / dy).astype(np.int64), 0, h - 1)
        arr = self._levels[0]
        values = np.asarray(arr[rows, cols] if isinstance(arr, np.ndarray) else arr.vindex[rows, cols])
        if values.ndim == 2:  # (n, channels): the first channel carries the label
            values = values[:, 0]
        return self._as_labels(values, 0)

    def label_stats(self) -> list[LabelStats]:
        return [LabelStats(label=lab, count=None, area_l0=self.area_l0(lab)) for lab in self.labels]
