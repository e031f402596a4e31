"""Pure geometry of slide reads: boxes, level choice, covering regions and the read grid (no I/O).

Frames (see ``docs/architecture.md`` and ``docs/slides.md``):

* **level-0 pixels, continuous**: pixel ``(i, j)`` of level 0 covers ``[i, i+1) x [j, j+1)``;
  a box is ``(x0, y0, x1, y1)`` in these units (floats allowed).
* **level-k pixels**: the same plane divided by the level's downsample ``d_k``; level pixel ``i``
  covers level-0 ``[i * d_k, (i + 1) * d_k)``.
* **output pixels**: a read of ``box_l0`` into ``size_px = (width, height)`` makes output pixel
  ``(u, v)`` stand for ``[x0 + u*sx, x0 + (u+1)*sx) x [y0 + v*sy, y0 + (v+1)*sy)`` with
  ``sx = (x1 - x0) / width``; its centre is at ``x0 + (u + 0.5) * sx``.

Integer regions ``(ix0, iy0, ix1, iy1)`` are half-open pixel ranges of one level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: ``(x0, y0, x1, y1)`` in continuous pixel coordinates of a stated frame (floats).
Box = tuple[float, float, float, float]
#: ``(ix0, iy0, ix1, iy1)`` half-open integer pixel range of one level.
Region = tuple[int, int, int, int]
#: ``(width, height)`` in pixels at a stated mpp.
Size = tuple[int, int]

#: Relative tolerance of level choice: a level whose mpp is at most ``target * (1 + LEVEL_TOLERANCE)``
#: is fine enough (so a 0.2475 or 0.2525 mpp scan serves 0.25 mpp requests from level 0).
LEVEL_TOLERANCE = 0.02


def as_size(size_px: int | Sequence[int]) -> Size:
    """Normalise ``size_px`` (an int for square, or ``(width, height)``) and check it is positive.

    >>> as_size(3), as_size((4, 2))
    ((3, 3), (4, 2))
    """
    if isinstance(size_px, (int, np.integer)):
        size = (int(size_px), int(size_px))
    else:
        values = tuple(int(s) for s in size_px)
        if len(values) != 2:
            raise ValueError(f"size_px must be an int or (width, height), got {size_px!r}")
        size = (values[0], values[1])
    if size[0] <= 0 or size[1] <= 0:
        raise ValueError(f"size_px must be positive, got {size}")
    return size


def centered_box(center_l0: Sequence[float], size_px: int | Sequence[int], downsample: float) -> Box:
    """Box (level-0 pixels) of a ``size_px`` read centred on ``center_l0``.

    Parameters
    ----------
    center_l0
        ``(x, y)`` centre in continuous level-0 pixels (sub-pixel values kept).
    size_px
        Output size ``(width, height)`` (or one int) in pixels at the requested mpp.
    downsample
        Level-0 pixels per output pixel (``mpp / slide.mpp``).

    >>> centered_box((10.0, 10.0), 4, 0.5)
    (9.0, 9.0, 11.0, 11.0)
    """
    if not downsample > 0 or not math.isfinite(downsample):
        raise ValueError(f"downsample must be a positive number, got {downsample!r}")
    width, height = as_size(size_px)
    cx, cy = float(center_l0[0]), float(center_l0[1])
    x0 = cx - width * downsample / 2
    y0 = cy - height * downsample / 2
    return (x0, y0, x0 + width * downsample, y0 + height * downsample)


def check_box(box: Sequence[float]) -> Box:
    """Return ``box`` as a float 4-tuple, raising ``ValueError`` unless finite with ``x1 > x0``, ``y1 > y0``."""
    values = tuple(float(v) for v in box)
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"a box is four finite numbers (x0, y0, x1, y1), got {box!r}")
    x0, y0, x1, y1 = values
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"a box needs x1 > x0 and y1 > y0, got {values}")
    return (x0, y0, x1, y1)


def box_scale(box: Box, size_px: Size) -> tuple[float, float]:
    """``(sx, sy)``: box units per output pixel along x and y."""
    return ((box[2] - box[0]) / size_px[0], (box[3] - box[1]) / size_px[1])


def choose_level(level_mpps: Sequence[float], target_mpp: float, tolerance: float = LEVEL_TOLERANCE) -> int:
    """Index of the coarsest level that is still fine enough for ``target_mpp``.

    A level qualifies when its mpp is ``<= target_mpp * (1 + tolerance)``; among those the one
    with the largest mpp (fewest pixels to read) wins. When even level 0 is coarser than the
    target (up-sampling), level 0 is returned.

    Parameters
    ----------
    level_mpps
        Microns per pixel of each level, level 0 first (ascending).
    target_mpp
        Microns per output pixel wanted.
    tolerance
        Relative slack, so 0.2475 vs 0.25 counts as a match.

    >>> choose_level([0.25, 0.5, 1.0, 2.0], 0.9)
    1
    >>> choose_level([0.25, 0.5, 1.0, 2.0], 0.99)
    2
    >>> choose_level([0.25, 0.5], 0.1)
    0
    """
    if not target_mpp > 0:
        raise ValueError(f"target mpp must be positive, got {target_mpp!r}")
    best = 0
    limit = target_mpp * (1 + tolerance)
    for index, level_mpp in enumerate(level_mpps):
        if level_mpp <= limit and level_mpp >= level_mpps[best]:
            best = index
    return best


def snap_downsample(dims0: Size, dims_k: Size, reported: float) -> float:
    """The geometric downsample of a pyramid level.

    Pyramids are built by integer factors, with the level size rounded down or up; readers
    report the *average* ratio of sizes (e.g. 1.9959 for a 601-wide slide whose level 1 is 301
    wide). When an integer factor ``d`` reproduces both level sides (``floor`` or ``ceil`` of
    ``dims0 / d``) it is the true downsample and is returned; otherwise ``reported`` is kept.

    >>> snap_downsample((601, 401), (301, 201), 1.9958)
    2.0
    >>> snap_downsample((4443, 3567), (2221, 1783), 2.0005)
    2.0
    >>> snap_downsample((1000, 1000), (300, 300), 3.333)
    3.333
    """
    w0, h0 = dims0
    wk, hk = dims_k
    candidates = {max(1, round(reported)), max(1, round(w0 / max(wk, 1))), max(1, round(h0 / max(hk, 1)))}
    for d in sorted(candidates):
        if wk in (w0 // d, -(-w0 // d)) and hk in (h0 // d, -(-h0 // d)):
            return float(d)
    return float(reported)


def to_level(box_l0: Box, downsample: float) -> Box:
    """Express a level-0 box in level pixels of a level with the given downsample."""
    return (box_l0[0] / downsample, box_l0[1] / downsample, box_l0[2] / downsample, box_l0[3] / downsample)


def covering_region(box: Box, margin: int = 1) -> Region:
    """Smallest integer region containing ``box`` grown by ``margin`` pixels on every side.

    The margin gives the bilinear/area filters the neighbours they need at the edges.

    >>> covering_region((1.5, 2.0, 3.2, 4.0), margin=1)
    (0, 1, 5, 5)
    """
    return (
        math.floor(box[0]) - margin,
        math.floor(box[1]) - margin,
        math.ceil(box[2]) + margin,
        math.ceil(box[3]) + margin,
    )


def aligned_region(box: Box, size_px: Size, atol: float = 1e-6) -> Region | None:
    """The integer region equal to ``box`` when it maps 1:1 onto ``size_px`` pixels, else ``None``.

    ``box`` is in level pixels. A match needs integer corners (within ``atol``) and a box exactly
    ``size_px`` pixels large, so the read is a plain copy of level pixels (no resampling).

    >>> aligned_region((2.0, 3.0, 6.0, 5.0), (4, 2))
    (2, 3, 6, 5)
    >>> aligned_region((2.5, 3.0, 6.5, 5.0), (4, 2)) is None
    True
    """
    rounded = tuple(round(v) for v in box)
    if any(abs(v - r) > atol for v, r in zip(box, rounded, strict=True)):
        return None
    ix0, iy0, ix1, iy1 = (int(r) for r in rounded)
    if (ix1 - ix0, iy1 - iy0) != (size_px[0], size_px[1]):
        return None
    return (ix0, iy0, ix1, iy1)


def intersect(region: Region, bounds: Region) -> Region | None:
    """Intersection of two integer regions, or ``None`` when empty."""
    ix0, iy0 = max(region[0], bounds[0]), max(region[1], bounds[1])
    ix1, iy1 = min(region[2], bounds[2]), min(region[3], bounds[3])
    if ix1 <= ix0 or iy1 <= iy0:
        return None
    return (ix0, iy0, ix1, iy1)


def union_region(regions: Sequence[Region]) -> Region:
    """Bounding integer region of several regions."""
    if not regions:
        raise ValueError("union of no regions")
    arr = np.asarray(regions, dtype=np.int64)
    return (int(arr[:, 0].min()), int(arr[:, 1].min()), int(arr[:, 2].max()), int(arr[:, 3].max()))


def region_area(region: Region) -> int:
    """Number of pixels of an integer region (0 when empty)."""
    return max(0, region[2] - region[0]) * max(0, region[3] - region[1])


# --------------------------------------------------------------------------------------------
# The read grid: one type for every raster laid over a slide
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadGrid:
    """A level-0 box cut into ``width x height`` output pixels: the grid every raster of mrseg uses.

    Output pixel ``(u, v)`` covers the level-0 area ``[x0 + u*sx, x0 + (u+1)*sx) x [y0 + v*sy,
    y0 + (v+1)*sy)`` with ``sx = (x1 - x0) / width`` and ``sy = (y1 - y0) / height``; its centre is
    ``(x0 + (u + 0.5) * sx, y0 + (v + 0.5) * sy)``. Slide reads (:meth:`mrseg.wsi.slide.Slide.read_box`),
    label masks (:meth:`mrseg.wsi.annotations.Annotations.rasterize`), tissue masks, probability
    maps and evaluation grids all use it, so any two rasters of one request are pixel-aligned.

    Attributes
    ----------
    box_l0
        ``(x0, y0, x1, y1)`` in level-0 pixels (floats, ``x1 > x0``, ``y1 > y0``).
    size_px
        ``(width, height)`` in output pixels.

    Raises
    ------
    ValueError
        A box that is not finite or empty, or a size that is not two positive integers.
    """

    box_l0: Box
    size_px: Size

    def __post_init__(self) -> None:
        object.__setattr__(self, "box_l0", check_box(self.box_l0))
        values = tuple(self.size_px)
        if len(values) != 2 or any(int(v) != v or isinstance(v, bool) for v in values):
            raise ValueError(f"size_px must be two positive integers (width, height), got {self.size_px!r}")
        object.__setattr__(self, "size_px", as_size((int(values[0]), int(values[1]))))

    @classmethod
    def centered(cls, center_l0: Sequence[float], size_px: int | Sequence[int], downsample: float) -> ReadGrid:
        """The grid of a ``size_px`` read centred on ``center_l0`` with ``downsample`` level-0 px per pixel."""
        return cls(centered_box(center_l0, size_px, downsample), as_size(size_px))

    @classmethod
    def covering(cls, dimensions_l0: Sequence[int], slide_mpp: float, mpp: float) -> ReadGrid:
        """The whole slide ``(0, 0, W0, H0)`` at ``mpp``.

        ``max(1, round(W0 * slide_mpp / mpp))`` pixels wide (likewise high): the grid of thumbnails,
        tissue masks and evaluation at a given resolution.
        """
        if not (mpp > 0 and math.isfinite(mpp)):
            raise ValueError(f"mpp must be a positive number, got {mpp!r}")
        w0, h0 = int(dimensions_l0[0]), int(dimensions_l0[1])
        size = (max(1, round(w0 * slide_mpp / mpp)), max(1, round(h0 * slide_mpp / mpp)))
        return cls((0.0, 0.0, float(w0), float(h0)), size)

    @classmethod
    def of_map(cls, shape_hw: Sequence[int], pixel_l0: float) -> ReadGrid:
        """The grid of a ``shape_hw = (H, W)`` map whose pixel ``(u, v)`` covers ``[u*d, (u+1)*d) x [v*d, (v+1)*d)``.

        Level-0 pixels, ``d = pixel_l0``; probability maps have ``d = map_mpp / slide_mpp`` and start at
        the slide's top-left corner.
        """
        h, w = int(shape_hw[0]), int(shape_hw[1])
        return cls((0.0, 0.0, w * pixel_l0, h * pixel_l0), (w, h))

    @property
    def width(self) -> int:
        return self.size_px[0]

    @property
    def height(self) -> int:
        return self.size_px[1]

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``: the shape of a numpy array on this grid."""
        return (self.size_px[1], self.size_px[0])

    @property
    def scale(self) -> tuple[float, float]:
        """``(sx, sy)``: level-0 pixels per output pixel."""
        return box_scale(self.box_l0, self.size_px)

    def mpp(self, slide_mpp: float) -> float:
        """Microns per output pixel (along x) on a slide of level-0 ``slide_mpp``."""
        return slide_mpp * self.scale[0]

    def centers(self) -> tuple[np.ndarray, np.ndarray]:
        """Level-0 ``x`` of every column's pixel centres ``(width,)`` and ``y`` of every row's ``(height,)``."""
        x0, y0, _, _ = self.box_l0
        sx, sy = self.scale
        return x0 + (np.arange(self.width) + 0.5) * sx, y0 + (np.arange(self.height) + 0.5) * sy

    def rows(self, v0: int, v1: int) -> ReadGrid:
        """The sub-grid of rows ``v0 .. v1 - 1`` (same columns and pixel size)."""
        if not 0 <= v0 < v1 <= self.height:
            raise ValueError(f"rows {v0}:{v1} outside a grid of height {self.height}")
        x0, y0, x1, _ = self.box_l0
        sy = self.scale[1]
        return ReadGrid((x0, y0 + v0 * sy, x1, y0 + v1 * sy), (self.width, v1 - v0))

    def index_of(self, x_l0: np.ndarray, y_l0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Column and row (``int64``, possibly outside the grid) of the pixels containing level-0 points."""
        x0, y0, _, _ = self.box_l0
        sx, sy = self.scale
        cols = np.floor((np.asarray(x_l0, dtype=np.float64) - x0) / sx).astype(np.int64)
        rows = np.floor((np.asarray(y_l0, dtype=np.float64) - y0) / sy).astype(np.int64)
        return cols, rows


def to_grid(box_l0: Sequence[float] | ReadGrid, size_px: Sequence[int] | int | None = None) -> ReadGrid:
    """A :class:`ReadGrid` from a grid, or from a box and a size (the two spellings of a read request)."""
    if isinstance(box_l0, ReadGrid):
        if size_px is not None:
            raise ValueError("give a ReadGrid or (box_l0, size_px), not both")
        return box_l0
    if size_px is None:
        raise ValueError("a read request needs a box and a size (width, height)")
    return ReadGrid(tuple(box_l0), as_size(size_px) if isinstance(size_px, int) else tuple(size_px))  # type: ignore[arg-type]


#: Most raster pixels :func:`sample_nearest` reads at once (it walks the target in strips of rows beyond that).
SAMPLE_STRIP_PIXELS = 1 << 24


def sample_nearest(raster: Any, raster_grid: ReadGrid, target: ReadGrid, *, fill: Any = 0) -> np.ndarray:
    """Nearest-neighbour sample of ``raster`` (laid on ``raster_grid``) at the pixel centres of ``target``.

    Parameters
    ----------
    raster
        ``(H, W[, ...])`` array-like with numpy slicing (numpy, zarr, memory map). Only the rows and
        columns the target needs are read, in strips of at most about :data:`SAMPLE_STRIP_PIXELS`
        raster pixels. A raster that says which regions hold only its ``fill_value``
        (``region_is_fill(y0, y1, x0, x1)``, as the sparse probability maps of
        :mod:`mrseg.inference.store` do) is not read in such strips: the work then follows the
        strips that hold something, not the raster's area.
    raster_grid
        Where the raster lies (``raster.shape[:2] == raster_grid.shape``).
    target
        The grid to sample onto.
    fill
        Value of target pixels whose centre falls outside the raster.

    Returns
    -------
    numpy.ndarray
        ``target.shape`` (+ the raster's trailing dimensions), the raster's dtype.
    """
    h, w = raster_grid.shape
    if tuple(int(s) for s in raster.shape[:2]) != (h, w):
        raise ValueError(f"raster of shape {tuple(raster.shape[:2])} does not match its grid {(h, w)}")
    xs, ys = target.centers()
    cols, rows = raster_grid.index_of(xs, ys)
    ok_c = (cols >= 0) & (cols < w)
    out = np.full((*target.shape, *raster.shape[2:]), fill, dtype=np.dtype(raster.dtype))
    inside = np.flatnonzero((rows >= 0) & (rows < h))
    if not ok_c.any() or inside.size == 0:
        return out
    c_sel = cols[ok_c]
    c0, c1 = int(c_sel.min()), int(c_sel.max()) + 1  # only the columns the target needs are read
    step = max(1, SAMPLE_STRIP_PIXELS // (c1 - c0))  # raster rows per read
    out_cols = np.flatnonzero(ok_c)
    region_is_fill = getattr(raster, "region_is_fill", None)
    start = 0
    while start < inside.size:
        r0 = int(rows[inside[start]])
        stop = int(np.searchsorted(rows[inside], r0 + step, side="left"))
        stop = max(stop, start + 1)
        v = inside[start:stop]
        r1 = int(rows[v[-1]]) + 1
        if region_is_fill is not None and region_is_fill(r0, r1, c0, c1):
            out[_block(v, out_cols)] = raster.fill_value
        else:
            strip = np.asarray(raster[r0:r1, c0:c1])
            # two 1-D takes, not one 2-D fancy index: ~10x faster on wide targets
            out[_block(v, out_cols)] = strip.take(rows[v] - r0, axis=0).take(c_sel - c0, axis=1)
        start = stop
    return out


def _block(rows: np.ndarray, cols: np.ndarray) -> Any:
    """Index of the ``rows x cols`` block of an array: slices when both are contiguous ranges, else ``np.ix_``."""
    if rows[-1] - rows[0] + 1 == rows.size and cols[-1] - cols[0] + 1 == cols.size:
        return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
    return np.ix_(rows, cols)
