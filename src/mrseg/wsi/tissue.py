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
   filled (:func:`scipy.ndimage.label`, :func:`scipy.ndimage.binary_fill_holes`).

Steps 1-3 run on bands of thumbnail rows (:func:`threshold_tissue`), with the exact result of the whole
image at once, so a CAMELYON-sized thumbnail costs its own bytes, the mask's and the clean-up's, not
float64 copies of it. A slide with no tissue (fully white, fully black) gives an empty mask and a
logged warning.
"""

from __future__ import annotations

import logging
import math
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from scipy import ndimage
from skimage.color import rgb2hsv
from skimage.filters import gaussian, threshold_otsu
from skimage.util import img_as_float64

from mrseg.core.atomic import atomic_path
from mrseg.core.errors import ConfigError, DataError
from mrseg.core.tissue_spec import TissueSettings
from mrseg.wsi.geometry import Box, ReadGrid, Size, sample_nearest, to_grid
from mrseg.wsi.slide import check_read_size

log = logging.getLogger(__name__)
#: Covered areas up to this fraction of the mask's tissue pixels are the rounding error of the
#: interpolated summed-area table (64 float64 epsilons: 16 rounded products, with margin), not tissue.
_AREA_ROUNDING = 64 * float(np.finfo(np.float64).eps)


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
        constant on each pixel), so the cost is O(n) after an O(h * w) set-up. The table is built
        for each call over the tissue's bounding box only and freed on return: the same counts as the
        whole mask's table (no tissue lies outside that box), but it is not held while the tile loop
        runs (74 MB of int32 for a CAMELYON16 slide's 8 µm/px mask), and it costs the tissue's
        extent, not the slide's. A box whose corners fall inside mask pixels gets its covered area as
        a difference of interpolated counts up to the mask's total, with a float64 rounding error of
        order 1e-16 of that total: an area below :data:`_AREA_ROUNDING` times the total is that
        error, and counts as exactly no tissue (else a blank tile below and right of any tissue would
        read as touching it).
        """
        boxes = np.asarray(boxes_l0, dtype=np.float64).reshape(-1, 4)
        if not ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all():
            raise ValueError("every box must have x1 > x0 and y1 > y0")
        extent = _tissue_extent(self.mask)
        if extent is None:
            return np.zeros(len(boxes), dtype=np.float64)
        (r0, r1), (c0, c1) = extent
        sx, sy = self.scale
        h, w = self.mask.shape
        table = _summed_area(self.mask[r0:r1, c0:c1])
        # Box corners in mask-pixel units, clipped to the mask (outside contributes nothing).
        u = np.clip((boxes[:, [0, 2]] - self.box_l0[0]) / sx, 0, w)
        v = np.clip((boxes[:, [1, 3]] - self.box_l0[1]) / sy, 0, h)

        def at(j: np.ndarray, i: np.ndarray) -> np.ndarray:
            # the whole mask's table at corner (i, j): the cropped table's, clamped to its edges
            return table[np.clip(j - r0, 0, r1 - r0), np.clip(i - c0, 0, c1 - c0)]

        def cumulative(uu: np.ndarray, vv: np.ndarray) -> np.ndarray:
            i0 = np.minimum(np.floor(uu).astype(np.int64), w - 1)
            j0 = np.minimum(np.floor(vv).astype(np.int64), h - 1)
            a, b = uu - i0, vv - j0
            f00, f10, f01, f11 = at(j0, i0), at(j0, i0 + 1), at(j0 + 1, i0), at(j0 + 1, i0 + 1)
            return (1 - a) * (1 - b) * f00 + a * (1 - b) * f10 + (1 - a) * b * f01 + a * b * f11

        covered = (
            cumulative(u[:, 1], v[:, 1])
            - cumulative(u[:, 0], v[:, 1])
            - cumulative(u[:, 1], v[:, 0])
            + cumulative(u[:, 0], v[:, 0])
        )
        covered[covered <= _AREA_ROUNDING * float(table[-1, -1])] = 0.0
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (sx * sy)
        return np.clip(covered / area, 0.0, 1.0)

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


def _tissue_extent(mask: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """``((r0, r1), (c0, c1))``: the rows and columns of ``mask`` (``bool (h, w)``) that hold tissue; None if none."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return (int(rows[0]), int(rows[-1]) + 1), (int(cols[0]), int(cols[-1]) + 1)


def _summed_area(mask: np.ndarray) -> np.ndarray:
    """``(h + 1, w + 1)`` summed-area table of ``bool (h, w)``.

    Entry ``[j, i]`` counts the tissue pixels above-left of corner ``(i, j)`` (rows ``< j``, columns ``< i``).
    """
    h, w = mask.shape
    # exact integer counts, in the narrowest type that holds them (a quarter of float64's memory)
    dtype = np.int32 if h * w < 2**31 else np.int64
    table = np.zeros((h + 1, w + 1), dtype=dtype)
    np.cumsum(mask, axis=0, dtype=dtype, out=table[1:, 1:])
    np.cumsum(table[1:, 1:], axis=1, out=table[1:, 1:])
    return table


#: The file types :meth:`TissueMask.save` writes.
MASK_SUFFIXES = (".png", ".npz")


def check_mask_suffix(path: str | os.PathLike[str]) -> None:
    """Raise :class:`ConfigError` unless ``path`` ends in one of :data:`MASK_SUFFIXES`."""
    if Path(path).suffix.lower() not in MASK_SUFFIXES:
        raise ConfigError(
            f"{path}: a tissue mask is written as {' or '.join(MASK_SUFFIXES)}, not {Path(path).suffix!r}"
        )


#: Thumbnail pixels processed at once by :func:`detect_tissue` (a band of rows): its float64 work
#: arrays stay a few tens of MB whatever the thumbnail size.
BAND_PIXELS = 1 << 18
#: Threads computing bands of the thumbnail at once (:func:`threshold_tissue`).
TISSUE_THREADS = min(4, os.cpu_count() or 1)


def detect_tissue(
    rgb: np.ndarray,
    mpp: float,
    settings: TissueSettings | None = None,
    *,
    band_pixels: int = BAND_PIXELS,
    threads: int = TISSUE_THREADS,
) -> np.ndarray:
    """Tissue mask ``bool (h, w)`` of an RGB image ``uint8 (h, w, 3)`` at ``mpp`` microns per pixel.

    :func:`threshold_tissue` then :func:`clean_tissue`; ``settings.mpp`` is not used here (the
    image's own ``mpp`` is).
    """
    p = settings or TissueSettings()
    return clean_tissue(threshold_tissue(rgb, mpp, p, band_pixels=band_pixels, threads=threads), mpp, p)


def threshold_tissue(
    rgb: np.ndarray,
    mpp: float,
    settings: TissueSettings | None = None,
    *,
    band_pixels: int = BAND_PIXELS,
    threads: int = TISSUE_THREADS,
) -> np.ndarray:
    """Steps 1-3 of the method: ``bool (h, w)``, smoothed saturation above the threshold and not dark or pen.

    The image (``uint8 (h, w, 3)`` at ``mpp`` µm/px) is processed in bands of about ``band_pixels``
    pixels, with a halo of rows for the smoothing, so that besides the image and the mask only a
    few bands' float64 work arrays are held (``threads`` bands are computed at once, each pass in
    row order): the result is exactly that of the whole image at once. All False when no pixel is
    valid.
    """
    p = settings or TissueSettings()
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"expected an RGB image (h, w, 3), got shape {rgb.shape}")
    bands = _Bands(rgb, mpp, p, band_pixels, threads)
    threshold = bands.threshold()
    tissue = np.zeros(rgb.shape[:2], dtype=bool)
    if threshold is not None:
        for v0, v1, smooth, valid in bands:
            np.logical_and(smooth > threshold, valid, out=tissue[v0:v1])
    return tissue


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation ``float64 (h, w)`` of ``uint8 (h, w, 3)``: exactly that of :func:`skimage.color.rgb2hsv`.

    For ``uint8`` images it is a lookup on each pixel's largest and smallest channel
    (:func:`channel_extremes`, :data:`_SATURATION`), the same float64 values as skimage's formula
    without its reductions over the 3-channel axis (which took most of a large thumbnail's detection
    time); other dtypes take skimage's formula.
    """
    if rgb.dtype == np.uint8:
        return _saturation_of(*channel_extremes(rgb))
    arr = img_as_float64(rgb)
    value, delta = arr.max(-1), np.ptp(arr, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sat = delta / value
    sat[delta == 0.0] = 0.0
    return sat


def channel_extremes(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Largest and smallest of the first three channels of ``uint8 (h, w, >=3)``, each ``uint8 (h, w)``."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    high = np.maximum(r, g)
    np.maximum(high, b, out=high)
    low = np.minimum(r, g)
    np.minimum(low, b, out=low)
    return high, low


def _saturation_table() -> np.ndarray:
    """``float64 (256 * 256,)``: skimage's HSV saturation of a pixel whose channels span ``[low, high]``.

    Index ``high * 256 + low``. The channels' float values are skimage's own (``img_as_float64``), and
    the maximum and range of monotonically converted values are those of the converted extremes, so
    each entry is bit for bit what :func:`skimage.color.rgb2hsv` computes for such a pixel.
    """
    value = img_as_float64(np.arange(256, dtype=np.uint8))
    high, low = value[:, None], value[None, :]
    delta = high - low
    with np.errstate(invalid="ignore", divide="ignore"):
        table = delta / high
    table[~(delta > 0.0)] = 0.0  # grey pixels (and the unused low > high half)
    return np.ascontiguousarray(table.ravel())


_SATURATION = _saturation_table()


def _saturation_of(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """:data:`_SATURATION` looked up for channel extremes ``uint8 (h, w)`` (:func:`channel_extremes`)."""
    index = high.astype(np.intp)
    index <<= 8
    index |= low
    return _SATURATION[index]


class _Bands:
    """The smoothed saturation and the valid-pixel mask of an RGB image, one band of rows at a time.

    Iterating computes ``threads`` bands at once (numpy and scipy release the GIL in these passes)
    and yields them in order; at most ``threads + 1`` bands' work arrays are alive.
    """

    def __init__(self, rgb: np.ndarray, mpp: float, p: TissueSettings, band_pixels: int, threads: int = 1) -> None:
        self.rgb, self.p = rgb, p
        self.sigma = p.smooth_um / mpp
        # scipy's Gaussian reaches int(truncate * sigma + 0.5) rows either side (skimage: truncate 4)
        self.halo = int(4.0 * self.sigma + 0.5) if self.sigma >= 0.5 else 0
        self.rows = max(1, band_pixels // max(1, rgb.shape[1]))
        self.threads = max(1, threads)
        # the pen's hues avoid the red sector (skimage's hue of a red-largest pixel), so those pixels need no hue
        self.pen_not_red = 1 / 6 <= p.pen_hue[0] and p.pen_hue[1] <= 5 / 6

    def __iter__(self) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
        """Yield ``(v0, v1, smooth, valid)`` for rows ``[v0, v1)``: smoothed saturation and not dark or pen."""
        starts = range(0, self.rgb.shape[0], self.rows)
        if self.threads == 1 or len(starts) == 1:
            yield from map(self.band, starts)
            return
        with ThreadPoolExecutor(self.threads, thread_name_prefix="mrseg-tissue") as pool:
            pending: deque[Future[tuple[int, int, np.ndarray, np.ndarray]]] = deque()
            try:
                for v0 in starts:
                    pending.append(pool.submit(self.band, v0))
                    if len(pending) >= self.threads:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:
                for future in pending:  # closed early or failed: nothing queued starts
                    future.cancel()

    def band(self, v0: int) -> tuple[int, int, np.ndarray, np.ndarray]:
        """``(v0, v1, smooth, valid)`` of the band of rows starting at ``v0``."""
        h = self.rgb.shape[0]
        v1 = min(h, v0 + self.rows)
        h0, h1 = max(0, v0 - self.halo), min(h, v1 + self.halo)
        band = self.rgb[h0:h1, :, :3]
        high, low = channel_extremes(band) if band.dtype == np.uint8 else (band.max(axis=2), None)
        sat = _saturation_of(high, low) if low is not None else saturation(band)
        smooth = gaussian(sat, sigma=self.sigma) if self.sigma >= 0.5 else sat
        core = slice(v0 - h0, v1 - h0)
        sat, rgb = sat[core], self.rgb[v0:v1, :, :3]
        high = high[core]
        dark = high < self.p.dark_threshold
        # hue only where a pen mark is possible (saturated pixels): rgb2hsv is per pixel
        pen = sat > self.p.pen_saturation
        if self.pen_not_red:  # a pixel whose red alone is largest has a hue in [0, 1/6) or (5/6, 1)
            pen &= (rgb[..., 0] < high) | (rgb[..., 1] == high) | (rgb[..., 2] == high)
        hue = rgb2hsv(rgb[pen][np.newaxis])[0, :, 0]
        pen[pen] = (hue >= self.p.pen_hue[0]) & (hue <= self.p.pen_hue[1])
        return v0, v1, smooth[core], ~(dark | pen)

    def threshold(self) -> float | None:
        """Otsu's threshold of the valid pixels' smoothed saturation, clipped; None without valid pixels.

        Two passes (range, then the 256-bin histogram of :func:`skimage.filters.threshold_otsu`
        over that range), so the values are never gathered in one array.
        """
        low, high, count = math.inf, -math.inf, 0
        for _, _, smooth, valid in self:
            values = smooth[valid]
            if values.size:
                low, high, count = min(low, float(values.min())), max(high, float(values.max())), count + values.size
        if count == 0:
            return None
        if high > low:
            counts = np.zeros(256, dtype=np.int64)
            for _, _, smooth, valid in self:
                counts += np.histogram(smooth[valid], bins=256, range=(low, high))[0]
            edges = np.linspace(low, high, 257)
            otsu = float(threshold_otsu(hist=(counts, (edges[:-1] + edges[1:]) / 2.0)))
        else:
            otsu = low
        threshold = float(np.clip(otsu, self.p.min_saturation, self.p.max_saturation))
        log.debug("tissue: otsu %.3f -> threshold %.3f", otsu, threshold)
        return threshold


def clean_tissue(tissue: np.ndarray, mpp: float, settings: TissueSettings | None = None) -> np.ndarray:
    """Step 4: remove tissue objects under ``min_object_um2``, fill enclosed holes under ``max_hole_um2``.

    ``tissue`` is ``bool (h, w)`` at ``mpp`` µm/px (the sizes are in µm²).
    """
    p = settings or TissueSettings()
    pixel_um2 = mpp * mpp
    min_size = max(1, round(p.min_object_um2 / pixel_um2))
    max_hole = max(1, round(p.max_hole_um2 / pixel_um2))
    extent = _tissue_extent(tissue)
    if extent is None:
        return np.zeros(tissue.shape, dtype=bool)
    # Only the tissue's bounding box and a one-pixel frame of glass around it: every object lies
    # inside, and a background pixel reaches the frame exactly when it reaches the image border, so
    # the result is the whole image's, at a cost (int32 labels: 4 bytes a pixel) that follows the
    # tissue, not the slide (a CAMELYON-sized thumbnail at 8 µm/px is 78 Mpx).
    (r0, r1), (c0, c1) = extent
    rows = slice(max(0, r0 - 1), min(tissue.shape[0], r1 + 1))
    cols = slice(max(0, c0 - 1), min(tissue.shape[1], c1 + 1))
    out = np.zeros(tissue.shape, dtype=bool)
    out[rows, cols] = _clean(np.ascontiguousarray(tissue[rows, cols], dtype=bool), min_size, max_hole)
    return out


def _clean(tissue: np.ndarray, min_size: int, max_hole: int) -> np.ndarray:
    """:func:`clean_tissue` of a whole ``bool (h, w)`` image, sizes in pixels."""
    tissue = _without_small_objects(tissue, min_size - 1) if min_size > 1 else tissue
    return tissue | _small_holes(tissue, max_hole)


def _without_small_objects(mask: np.ndarray, max_size: int) -> np.ndarray:
    """``mask`` (``bool (h, w)``) without its 4-connected components of at most ``max_size`` pixels.

    The same result as :func:`skimage.morphology.remove_small_objects` (connectivity 1) in about 5
    bytes per pixel instead of 13 (int32 labels, counted and looked up in bands of rows).
    """
    labels, count = ndimage.label(mask)
    keep = _component_sizes(labels, count) > max_size
    keep[0] = False
    return _lookup(keep, labels)


def _small_holes(tissue: np.ndarray, max_size: int) -> np.ndarray:
    """The holes of ``tissue`` (``bool (h, w)``) of at most ``max_size`` pixels.

    A hole is a 4-connected component of the background that touches no edge of the image: the
    pixels that :func:`scipy.ndimage.binary_fill_holes` fills, whose default structure is that 4-
    connectivity. So ``binary_fill_holes(t) & ~t`` without those of its components over ``max_size``
    pixels (tested against that oracle), from one labelling of the background instead of
    ``binary_fill_holes``' dilation repeated until nothing changes, then a second labelling.
    """
    labels, count = ndimage.label(~tissue)
    fill = _component_sizes(labels, count) <= max_size
    fill[0] = False
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        fill[edge] = False
    return _lookup(fill, labels)


def _component_sizes(labels: np.ndarray, count: int) -> np.ndarray:
    """Pixels per label ``0..count`` of ``labels`` (``int32 (h, w)``), counted in bands of rows.

    numpy widens index arrays to int64: a band at a time here, not the whole image.
    """
    rows = _band_rows(labels)
    sizes = np.zeros(count + 1, dtype=np.int64)
    for v0 in range(0, labels.shape[0], rows):
        sizes += np.bincount(labels[v0 : v0 + rows].ravel(), minlength=count + 1)
    return sizes


def _band_rows(labels: np.ndarray) -> int:
    """Rows of ``labels`` (``(h, w)``) in a band of about :data:`BAND_PIXELS` pixels (at least one)."""
    return max(1, BAND_PIXELS // max(1, labels.shape[1]))


def _lookup(table: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``table[labels]`` (``bool``, shaped as ``labels``), in bands of rows."""
    rows = _band_rows(labels)
    out = np.empty(labels.shape, dtype=bool)
    for v0 in range(0, labels.shape[0], rows):
        out[v0 : v0 + rows] = table[labels[v0 : v0 + rows]]
    return out


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
    raw = threshold_tissue(rgb, effective_mpp, settings)
    del rgb  # the clean-up does not need the thumbnail: free it first (peak memory)
    mask = clean_tissue(raw, effective_mpp, settings)
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
    "clean_tissue",
    "detect_tissue",
    "saturation",
    "threshold_tissue",
    "tissue_mask",
]
