"""Tissue detection on a low-resolution thumbnail, queried in level-0 coordinates.

Method (:func:`tissue_mask`), on ``slide.thumbnail(mpp)``:

1. *Saturation* (HSV) smoothed by a Gaussian of ``smooth_um`` microns: H&E tissue is coloured,
   glass and scanner background are grey/white.
2. *Invalid pixels* are never tissue: near-black pixels (all channels below ``dark_threshold``:
   scanner voids, black borders, black pen) and *pen marks* — strongly saturated blue-green pixels
   (hue 90-234 degrees, saturation > 0.25), colours that haematoxylin and eosin do not produce.
3. A saturation threshold from Otsu's method on the valid pixels, clipped to
   ``[min_saturation, max_saturation]``: the lower bound keeps blank (all-background) slides
   empty instead of thresholding noise, the upper bound keeps pale tissue when a slide is mostly
   tissue and Otsu would split tissue from tissue.
4. Clean-up: objects smaller than ``min_object_um2`` removed, holes smaller than ``max_hole_um2``
   filled (:mod:`skimage.morphology`).

A slide with no tissue (fully white, fully black) gives an empty mask and a logged warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from scipy import ndimage
from skimage.color import rgb2hsv
from skimage.filters import gaussian, threshold_otsu
from skimage.morphology import remove_small_objects

from mrseg.core.atomic import atomic_path
from mrseg.core.errors import ConfigError, DataError
from mrseg.core.tissue_spec import TissueSettings
from mrseg.wsi.geometry import Box, ReadGrid, Size, sample_nearest, to_grid
from mrseg.wsi.slide import check_read_size

log = logging.getLogger(__name__)


class ThumbnailSource(Protocol):
    """What :func:`tissue_mask` needs of a slide (:class:`mrseg.wsi.slide.Slide` provides it)."""

    @property
    def dimensions(self) -> Size: ...

    @property
    def mpp(self) -> float: ...

    @property
    def path(self) -> Path: ...

    def thumbnail(self, mpp: float) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class TissueMask:
    """A boolean tissue mask on a grid covering the slide.

    Attributes
    ----------
    mask
        ``bool (h, w)``; pixel ``(u, v)`` covers the level-0 area
        ``[x0 + u * sx, x0 + (u + 1) * sx) x [y0 + v * sy, y0 + (v + 1) * sy)`` with
        ``sx = (x1 - x0) / w`` and ``sy = (y1 - y0) / h`` (the read grid of ``docs/architecture.md``).
    mpp
        Nominal microns per mask pixel (the thumbnail's mpp).
    box_l0
        Level-0 box the mask covers, ``(0, 0, W0, H0)`` for :func:`tissue_mask`.
    """

    mask: np.ndarray
    mpp: float
    box_l0: Box
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.mask.ndim != 2 or self.mask.size == 0:
            raise ValueError(f"tissue mask must be a non-empty 2-D array, got shape {self.mask.shape}")
        x0, y0, x1, y1 = self.box_l0
        if not (x1 > x0 and y1 > y0):
            raise ValueError(f"box_l0 must have x1 > x0 and y1 > y0, got {self.box_l0}")
        object.__setattr__(self, "mask", np.asarray(self.mask, dtype=bool))

    @property
    def grid(self) -> ReadGrid:
        """The read grid the mask lies on."""
        h, w = self.mask.shape
        return ReadGrid(self.box_l0, (w, h))

    @property
    def scale(self) -> tuple[float, float]:
        """Level-0 pixels per mask pixel ``(sx, sy)``."""
        return self.grid.scale

    @property
    def fraction(self) -> float:
        """Fraction of the mask's pixels that are tissue (0..1)."""
        return float(self.mask.mean())

    def contains(self, points_l0: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """``bool (n,)``: whether each level-0 point ``(x, y)`` falls in a tissue pixel (False outside)."""
        pts = np.asarray(points_l0, dtype=np.float64).reshape(-1, 2)
        h, w = self.mask.shape
        u, v = self.grid.index_of(pts[:, 0], pts[:, 1])
        inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
        out = np.zeros(len(pts), dtype=bool)
        out[inside] = self.mask[v[inside], u[inside]]
        return out

    def fraction_in_box(self, box_l0: Sequence[float]) -> float:
        """Fraction of the area of ``box_l0`` (level-0 pixels) covered by tissue pixels.

        Mask pixels are weighted by their exact overlap with the box; parts of the box outside
        the mask's box count as non-tissue.
        """
        return float(self.fraction_in_boxes(np.asarray([box_l0], dtype=np.float64))[0])

    def fraction_in_boxes(self, boxes_l0: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """``float64 (n,)``: :meth:`fraction_in_box` of many boxes ``(n, 4)`` at once.

        Uses the summed-area table of the mask, interpolated bilinearly (exact for a mask that is
        constant on each pixel), so the cost is O(n) after an O(h * w) set-up.
        """
        boxes = np.asarray(boxes_l0, dtype=np.float64).reshape(-1, 4)
        if not ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all():
            raise ValueError("every box must have x1 > x0 and y1 > y0")
        sx, sy = self.scale
        h, w = self.mask.shape
        table = self._summed_area
        # Box corners in mask-pixel units, clipped to the mask (outside contributes nothing).
        u = np.clip((boxes[:, [0, 2]] - self.box_l0[0]) / sx, 0, w)
        v = np.clip((boxes[:, [1, 3]] - self.box_l0[1]) / sy, 0, h)

        def cumulative(uu: np.ndarray, vv: np.ndarray) -> np.ndarray:
            i0 = np.minimum(np.floor(uu).astype(np.int64), w - 1)
            j0 = np.minimum(np.floor(vv).astype(np.int64), h - 1)
            a, b = uu - i0, vv - j0
            f00, f10 = table[j0, i0], table[j0, i0 + 1]
            f01, f11 = table[j0 + 1, i0], table[j0 + 1, i0 + 1]
            return (1 - a) * (1 - b) * f00 + a * (1 - b) * f10 + (1 - a) * b * f01 + a * b * f11

        covered = (
            cumulative(u[:, 1], v[:, 1])
            - cumulative(u[:, 0], v[:, 1])
            - cumulative(u[:, 1], v[:, 0])
            + cumulative(u[:, 0], v[:, 0])
        )
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (sx * sy)
        return np.clip(covered / area, 0.0, 1.0)

    @cached_property
    def _summed_area(self) -> np.ndarray:
        """``(h + 1, w + 1)`` table: entry ``[j, i]`` is the number of tissue pixels above-left of corner (i, j)."""
        table = np.zeros((self.mask.shape[0] + 1, self.mask.shape[1] + 1), dtype=np.float64)
        table[1:, 1:] = np.cumsum(np.cumsum(self.mask, axis=0, dtype=np.float64), axis=1)
        return table

    def rasterize(self, box_l0: Sequence[float] | ReadGrid, size_px: Sequence[int] | None = None) -> np.ndarray:
        """``bool (height, width)`` tissue mask of a read request (or a :class:`ReadGrid`), nearest at pixel centres."""
        return sample_nearest(self.mask, self.grid, to_grid(box_l0, size_px), fill=False)

    # --------------------------------------------------------------------------------------- I/O
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the mask atomically: ``.png`` (8-bit, 255 = tissue, mpp and box in text chunks) or ``.npz``."""
        path = Path(path)
        check_mask_suffix(path)
        with atomic_path(path) as tmp:
            if path.suffix.lower() == ".png":
                info = PngInfo()
                info.add_text("mrseg_mpp", repr(self.mpp))
                info.add_text("mrseg_box_l0", ",".join(repr(c) for c in self.box_l0))
                Image.fromarray(self.mask.astype(np.uint8) * 255).save(tmp, format="PNG", pnginfo=info)
            else:
                with tmp.open("wb") as fh:
                    np.savez_compressed(fh, mask=self.mask, mpp=self.mpp, box_l0=np.asarray(self.box_l0))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TissueMask:
        """Read a mask written by :meth:`save`."""
        path = Path(path)
        try:
            if path.suffix.lower() == ".png":
                with Image.open(path) as image:
                    text: dict[str, Any] = dict(getattr(image, "text", {}))
                    mask = np.asarray(image.convert("L")) > 127
                box = tuple(float(c) for c in text["mrseg_box_l0"].split(","))
                mpp = float(text["mrseg_mpp"])
            else:
                with np.load(path) as data:
                    mask, mpp, box = data["mask"], float(data["mpp"]), tuple(float(c) for c in data["box_l0"])
        except (OSError, KeyError, ValueError) as error:
            raise DataError(f"{path}: not a tissue mask written by mrseg ({error})") from None
        return cls(mask=mask, mpp=mpp, box_l0=(box[0], box[1], box[2], box[3]), source=str(path))


#: The file types :meth:`TissueMask.save` writes.
MASK_SUFFIXES = (".png", ".npz")


def check_mask_suffix(path: str | os.PathLike[str]) -> None:
    """Raise :class:`ConfigError` unless ``path`` ends in one of :data:`MASK_SUFFIXES`."""
    if Path(path).suffix.lower() not in MASK_SUFFIXES:
        raise ConfigError(
            f"{path}: a tissue mask is written as {' or '.join(MASK_SUFFIXES)}, not {Path(path).suffix!r}"
        )


def detect_tissue(rgb: np.ndarray, mpp: float, settings: TissueSettings | None = None) -> np.ndarray:
    """Tissue mask ``bool (h, w)`` of an RGB image ``uint8 (h, w, 3)`` at ``mpp`` microns per pixel.

    ``settings.mpp`` is not used here (the image's own ``mpp`` is).
    """
    p = settings or TissueSettings()
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"expected an RGB image (h, w, 3), got shape {rgb.shape}")
    rgb = rgb[..., :3]
    hsv = rgb2hsv(rgb)
    hue, sat = hsv[..., 0], hsv[..., 1]
    dark = rgb.max(axis=2) < p.dark_threshold
    pen = (hue >= p.pen_hue[0]) & (hue <= p.pen_hue[1]) & (sat > p.pen_saturation)
    valid = ~(dark | pen)
    sigma = p.smooth_um / mpp
    smooth = gaussian(sat, sigma=sigma) if sigma >= 0.5 else sat
    values = smooth[valid]
    if values.size == 0:
        return np.zeros(sat.shape, dtype=bool)
    otsu = threshold_otsu(values) if np.ptp(values) > 0 else float(values[0])
    threshold = float(np.clip(otsu, p.min_saturation, p.max_saturation))
    tissue = (smooth > threshold) & valid
    pixel_um2 = mpp * mpp
    min_size = max(1, round(p.min_object_um2 / pixel_um2))
    max_hole = max(1, round(p.max_hole_um2 / pixel_um2))
    tissue = _clean(remove_small_objects, tissue, min_size - 1) if min_size > 1 else tissue
    # Fill small enclosed holes only: background touching the image border is never a hole
    # (skimage's remove_small_holes would fill a whole small, tissue-free thumbnail).
    holes = ndimage.binary_fill_holes(tissue) & ~tissue
    tissue = tissue | (holes & ~_clean(remove_small_objects, holes, max_hole))
    log.debug("tissue: otsu %.3f -> threshold %.3f, %d dark, %d pen pixels", otsu, threshold, dark.sum(), pen.sum())
    return tissue


def _clean(func: Any, mask: np.ndarray, max_size: int) -> np.ndarray:
    """Call a skimage clean-up removing components of at most ``max_size`` pixels (old and new API)."""
    try:
        return np.asarray(func(mask, max_size=max_size))
    except TypeError:  # scikit-image < 0.26: the size is exclusive and positional
        return np.asarray(func(mask, max_size + 1))


def tissue_mask(slide: ThumbnailSource, settings: TissueSettings | None = None) -> TissueMask:
    """Detect tissue on ``slide.thumbnail(settings.mpp)`` (see the module docstring for the method).

    Parameters
    ----------
    slide
        An open :class:`mrseg.wsi.slide.Slide` (or anything with ``thumbnail``, ``dimensions``, ``mpp``, ``path``).
    settings
        Resolution (``mpp``, 8 um/px by default: 16x coarser than 0.5), thresholds and clean-up
        sizes; the defaults suit H&E.

    Returns
    -------
    TissueMask
        Covering ``(0, 0, W0, H0)``; empty (with a warning) when the slide shows no tissue.
    """
    settings = settings or TissueSettings()
    mpp = settings.mpp
    w0, h0 = slide.dimensions
    size = ReadGrid.covering((w0, h0), slide.mpp, mpp).size_px
    check_read_size(slide.path, size, f"a tissue mask at {mpp:g} µm/px", mpp=mpp, option="a tissue mpp (--tissue-mpp)")
    rgb = slide.thumbnail(mpp)
    effective_mpp = slide.mpp * w0 / rgb.shape[1]
    mask = detect_tissue(rgb, effective_mpp, settings)
    result = TissueMask(mask=mask, mpp=float(mpp), box_l0=(0.0, 0.0, float(w0), float(h0)), source=str(slide.path))
    if not mask.any():
        log.warning(
            "%s: no tissue found (blank, fully white or fully dark slide?); the tissue mask is empty", slide.path
        )
    else:
        log.debug("%s: tissue fraction %.3f at %g mpp", slide.path, result.fraction, mpp)
    return result


__all__ = [
    "MASK_SUFFIXES",
    "ThumbnailSource",
    "TissueMask",
    "TissueSettings",
    "check_mask_suffix",
    "detect_tissue",
    "tissue_mask",
]
