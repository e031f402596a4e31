"""Whole-slide images at any resolution: one small typed interface over the slide backends.

``Slide.read_box(box_l0, size_px)`` returns exactly ``size_px`` pixels for a box in continuous
level-0 pixels (see :mod:`mrseg.wsi.geometry` and ``docs/slides.md`` for the grid convention):

1. **Level choice**: the coarsest pyramid level whose mpp is ``<= target * 1.02``
   (:func:`mrseg.wsi.geometry.choose_level`).
2. **Exact copy** when the box maps 1:1 onto that level's pixel grid (integer corners, scale 1):
   the level's pixels are returned unchanged.
3. **Otherwise** an integer covering region of the level (+1 pixel margin) is read and resampled
   (:func:`mrseg.wsi.resample.resample`: exact area averaging when shrinking, bilinear
   interpolation when enlarging).
4. **Background**: level pixels outside the level, and every output pixel whose centre lies
   outside the level-0 slide ``[0, W0) x [0, H0)``, are white ``(255, 255, 255)``; RGBA is
   flattened on white. Reads never raise for out-of-slide boxes.

Files are opened by a backend (:mod:`mrseg.wsi.backends`: OpenSlide, tiffslide or a user's
:class:`~mrseg.wsi.backends.SlideBackend`), which also reports the level-0 mpp.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from mrseg.core.errors import MissingMppError, SlideError
from mrseg.wsi import geometry as geo
from mrseg.wsi.backends import AUTO, BACKGROUND, BackendSpec, SlideBackend, backend_name, open_backend, resolve_mpp
from mrseg.wsi.resample import resample

log = logging.getLogger(__name__)

#: Most level pixels a thumbnail read holds at once (it is read in bands of rows beyond that). A
#: read holds about 26 bytes per level pixel at its peak (the backend's RGBA, RGB, the resampler's
#: float32), so a band costs about 100 MB: a CAMELYON16-sized slide's 8 µm/px thumbnail (18 M px) is
#: its own 55 MB plus one band, not 0.55 GB (one 2**25-pixel read), and the bands are faster too.
THUMBNAIL_BAND_PIXELS = 1 << 22

#: Most pixels one read (its output, and the level region it resamples) may have: 2**28 px are
#: 768 MiB of RGB and about 3 GiB as the float32 the resampler works in. Larger requests are
#: refused before anything is allocated.
MAX_READ_PIXELS = 1 << 28

__all__ = ["MAX_READ_PIXELS", "THUMBNAIL_BAND_PIXELS", "ReadPlan", "Slide", "check_read_size"]


def check_read_size(
    path: Path, size_px: Sequence[int], what: str, *, mpp: float | None = None, option: str = "a coarser resolution"
) -> None:
    """Raise :class:`SlideError` when ``size_px`` ``(width, height)`` has more than :data:`MAX_READ_PIXELS`.

    The message names the file, ``what`` is read, its size in pixels and GiB (RGB) and, given the
    ``mpp`` (µm/px) of the read, the coarsest ``option`` value that fits.
    """
    width, height = int(size_px[0]), int(size_px[1])
    if width * height <= MAX_READ_PIXELS:
        return
    hint = "ask for fewer pixels or a coarser resolution"
    if mpp is not None:
        hint = f"use {option} of {mpp * math.sqrt(width * height / MAX_READ_PIXELS) * 1.01:.3g} µm/px or more"
    raise SlideError(
        f"{path}: {what} of {width}x{height} px ({width * height * 3 / 2**30:.1f} GiB) is larger than one read "
        f"may be ({MAX_READ_PIXELS} px); {hint}"
    )


@dataclass(frozen=True)
class ReadPlan:
    """How one ``read_box`` request is served.

    Attributes
    ----------
    box_l0
        Requested box, level-0 pixels.
    size_px
        Output ``(width, height)``.
    level
        Pyramid level read.
    box_level
        The box in that level's pixels.
    region
        Integer level region read (the box itself when ``aligned``, else its cover + 1 px margin).
    aligned
        True when the output is a plain copy of the level's pixels.
    """

    box_l0: geo.Box
    size_px: geo.Size
    level: int
    box_level: geo.Box
    region: geo.Region
    aligned: bool


class Slide:
    """A whole-slide image with mpp per level, read at any mpp. Create with :meth:`Slide.open`.

    Attributes
    ----------
    path, backend, vendor
        File, name of the backend used (``"openslide"``, ``"tiffslide"`` or a user backend's, see
        :func:`mrseg.wsi.backends.backend_name`) and scanner vendor.
    dimensions
        ``(width, height)`` of level 0 in pixels.
    level_count, level_dimensions
        Number of levels and ``(width, height)`` of each.
    level_downsamples
        Level-0 pixels per level pixel; snapped to the integer factor the pyramid was built with
        when the level sizes show one (:func:`mrseg.wsi.geometry.snap_downsample`).
    mpp, level_mpps
        Microns per pixel of level 0 and of each level (``mpp * downsample``).
    mpp_known
        False for a slide opened with ``require_mpp=False`` that has no mpp: :attr:`mpp` is then 1
        and every mpp (of levels, reads, thumbnails) is in level-0 pixels per pixel, not microns.
    associated_images
        Names of the associated images (label, macro, thumbnail...).
    pixels_read, reads
        Counters of level pixels fetched from the backend and of backend reads (for benchmarks).
    """

    def __init__(self, reader: SlideBackend, path: Path, mpp: float, *, mpp_known: bool = True) -> None:
        self._reader = reader
        self.path = path
        self.backend: str = backend_name(type(reader))
        self.vendor: str = str(reader.vendor)
        self.level_dimensions: tuple[geo.Size, ...] = tuple((int(w), int(h)) for w, h in reader.level_dimensions)
        self.dimensions: geo.Size = self.level_dimensions[0]
        self.level_count = len(self.level_dimensions)
        self.level_downsamples: tuple[float, ...] = tuple(
            geo.snap_downsample(self.dimensions, dims, float(ds))
            for dims, ds in zip(self.level_dimensions, reader.level_downsamples, strict=True)
        )
        self.mpp = float(mpp)
        self.mpp_known = mpp_known
        self.level_mpps: tuple[float, ...] = tuple(self.mpp * ds for ds in self.level_downsamples)
        self.associated_images: tuple[str, ...] = tuple(reader.associated_names)
        self.properties: dict[str, Any] = dict(reader.properties)
        self.pixels_read = 0
        self.reads = 0

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        backend: BackendSpec = AUTO,
        mpp: float | None = None,
        *,
        require_mpp: bool = True,
    ) -> Slide:
        """Open a slide file.

        Parameters
        ----------
        path
            Slide file (any OpenSlide format, a TIFF tiffslide reads, or what a user backend reads).
        backend
            ``"auto"`` (OpenSlide, then tiffslide for files OpenSlide cannot open), ``"openslide"``,
            ``"tiffslide"``, a name given to :func:`mrseg.wsi.backends.register_backend`, or a
            :class:`~mrseg.wsi.backends.SlideBackend` subclass.
        mpp
            Microns per level-0 pixel; overrides the metadata (needed when it has none).
        require_mpp
            False: a slide without mpp opens anyway, in pixel units (``mpp_known`` False, ``mpp`` 1),
            for tools that report pixel facts (``mrseg info``, ``mrseg tissue``).

        Raises
        ------
        SlideError
            Missing file, directory, unknown backend, unreadable/corrupt/unsupported file,
            anisotropic pixels.
        MissingMppError
            No mpp in the metadata and none given (with ``require_mpp``).
        """
        p = Path(path)
        if not p.exists():
            raise SlideError(f"{p}: no such file")
        if p.is_dir():
            raise SlideError(f"{p}: is a directory, not a slide file")
        reader = open_backend(p, backend)
        known = True
        try:
            level0_mpp = resolve_mpp(p, _reported_mpp(reader, p) if mpp is None else None, mpp)
        except MissingMppError:
            if require_mpp:
                reader.close()
                raise
            level0_mpp, known = 1.0, False
        except BaseException:
            reader.close()
            raise
        slide = cls(reader, p, level0_mpp, mpp_known=known)
        log.debug("opened %r", slide)
        return slide

    def __repr__(self) -> str:
        return (
            f"Slide({str(self.path)!r}, backend={self.backend!r}, dimensions={self.dimensions}, "
            f"levels={self.level_count}, mpp={f'{self.mpp:g}' if self.mpp_known else 'unknown'})"
        )

    # -- geometry --------------------------------------------------------------------------

    def box(self, center_l0: Sequence[float], mpp: float, size_px: int | Sequence[int]) -> geo.Box:
        """Level-0 box of a ``size_px`` read at ``mpp`` centred on ``center_l0`` (level-0 px)."""
        if not (mpp > 0 and math.isfinite(mpp)):
            raise ValueError(f"mpp must be a positive number, got {mpp!r}")
        return geo.centered_box(center_l0, size_px, mpp / self.mpp)

    def plan(self, box_l0: Sequence[float], size_px: int | Sequence[int]) -> ReadPlan:
        """Decide level, level box and level region for a read (no I/O)."""
        box = geo.check_box(box_l0)
        size = geo.as_size(size_px)
        sx, sy = geo.box_scale(box, size)
        level = geo.choose_level(self.level_mpps, self.mpp * min(sx, sy))
        box_level = geo.to_level(box, self.level_downsamples[level])
        region = geo.aligned_region(box_level, size)
        if region is not None:
            return ReadPlan(box, size, level, box_level, region, True)
        return ReadPlan(box, size, level, box_level, geo.covering_region(box_level, margin=1), False)

    # -- pixels ----------------------------------------------------------------------------

    def read_level_region(self, level: int, region: geo.Region) -> np.ndarray:
        """Pixels of an integer ``region`` of ``level``; parts outside the level are white.

        Returns ``uint8 (iy1 - iy0, ix1 - ix0, 3)``, possibly a read-only or non-contiguous view of
        the backend's buffer (copy it to keep or modify it). Counts the pixels fetched in
        :attr:`pixels_read`.
        """
        width, height = region[2] - region[0], region[3] - region[1]
        lw, lh = self.level_dimensions[level]
        inside = geo.intersect(region, (0, 0, lw, lh))
        if inside is None:
            return np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
        try:
            pixels = self._reader.read_level(level, inside)
        except Exception as error:
            raise SlideError(f"{self.path}: cannot read level {level} region {inside}: {error}") from error
        if pixels.shape != (inside[3] - inside[1], inside[2] - inside[0], 3):
            raise SlideError(f"{self.path}: level {level} region {inside} read as shape {pixels.shape}")
        self.pixels_read += geo.region_area(inside)
        self.reads += 1
        if inside == region:
            return pixels
        canvas = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
        canvas[inside[1] - region[1] : inside[3] - region[1], inside[0] - region[0] : inside[2] - region[0]] = pixels
        return canvas

    def render(self, plan: ReadPlan, canvas: np.ndarray) -> np.ndarray:
        """Turn the level pixels of ``plan.region`` into the requested output (pure, no I/O).

        For aligned plans inside the slide the result may be ``canvas`` itself (no copy).
        """
        inside = self._inside(plan.box_l0)
        if plan.aligned:
            out = canvas if inside else canvas.copy()
        else:
            out = resample(canvas, (plan.region[0], plan.region[1]), plan.box_level, plan.size_px)
        if not inside:
            self._whiten_outside(out, plan)
        return out

    def _inside(self, box_l0: geo.Box) -> bool:
        x0, y0, x1, y1 = box_l0
        return x0 >= 0 and y0 >= 0 and x1 <= self.dimensions[0] and y1 <= self.dimensions[1]

    def _whiten_outside(self, out: np.ndarray, plan: ReadPlan) -> None:
        x0, y0, _, _ = plan.box_l0
        width, height = plan.size_px
        sx, sy = geo.box_scale(plan.box_l0, plan.size_px)
        cx = x0 + (np.arange(width) + 0.5) * sx
        cy = y0 + (np.arange(height) + 0.5) * sy
        out[:, (cx < 0) | (cx >= self.dimensions[0])] = BACKGROUND
        out[(cy < 0) | (cy >= self.dimensions[1]), :] = BACKGROUND

    def read_box(self, box_l0: Sequence[float], size_px: int | Sequence[int]) -> np.ndarray:
        """Read ``box_l0`` (level-0 px, floats) into exactly ``size_px`` pixels: ``uint8 (H, W, 3)``."""
        plan = self.plan(box_l0, size_px)
        check_read_size(self.path, plan.size_px, "a read")
        region = plan.region
        check_read_size(self.path, (region[2] - region[0], region[3] - region[1]), "the level region of a read")
        out = self.render(plan, self.read_level_region(plan.level, plan.region))
        if not (out.flags.writeable and out.flags.c_contiguous):
            out = out.copy()
        return out

    def read(self, center_l0: Sequence[float], mpp: float, size_px: int | Sequence[int]) -> np.ndarray:
        """Read ``size_px`` pixels at ``mpp`` (microns/pixel) centred on ``center_l0`` (level-0 px).

        Returns ``uint8 (H, W, 3)``; see the module docstring for level choice, resampling and
        background.
        """
        return self.read_box(self.box(center_l0, mpp, size_px), size_px)

    def thumbnail(self, mpp: float) -> np.ndarray:
        """The whole slide at ``mpp``: ``uint8 (h, w, 3)`` covering ``(0, 0, W0, H0)``.

        ``h = max(1, round(H0 * slide.mpp / mpp))``, likewise ``w``. Read in bands of output rows
        so that at most about :data:`THUMBNAIL_BAND_PIXELS` level pixels are held at once (slides
        without a pyramid); the bands use the same output grid, so the result equals one read.
        The backend's tile cache is emptied afterwards: a thumbnail is a one-off read, and its
        tiles would stay in the cache (about 25 MB at CAMELYON16 size) for the life of the handle.
        """
        if not (mpp > 0 and math.isfinite(mpp)):
            raise ValueError(f"mpp must be a positive number, got {mpp!r}")
        w0, h0 = self.dimensions
        width, height = max(1, round(w0 * self.mpp / mpp)), max(1, round(h0 * self.mpp / mpp))
        check_read_size(self.path, (width, height), f"a thumbnail at {mpp:g} µm/px", mpp=mpp)
        plan = self.plan((0, 0, w0, h0), (width, height))
        ds = self.level_downsamples[plan.level]
        sy = h0 / height
        level_pixels_per_row = (w0 / ds + 2) * (sy / ds + 2)
        rows = max(1, int(THUMBNAIL_BAND_PIXELS // level_pixels_per_row))
        if rows >= height:
            out = self.read_box((0, 0, w0, h0), (width, height))
        else:
            out = np.empty((height, width, 3), dtype=np.uint8)
            for v0 in range(0, height, rows):
                v1 = min(height, v0 + rows)
                out[v0:v1] = self.read_box((0, v0 * sy, w0, v1 * sy), (width, v1 - v0))
        self._reader.drop_cache()
        return out

    def associated_image(self, name: str) -> np.ndarray:
        """An associated image (label, macro...) as ``uint8 (h, w, 3)``."""
        if name not in self.associated_images:
            raise SlideError(f"{self.path}: no associated image {name!r} (has {list(self.associated_images)})")
        return self._reader.associated(name)

    def reset_counters(self) -> None:
        """Zero :attr:`pixels_read` and :attr:`reads`."""
        self.pixels_read = 0
        self.reads = 0

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Release the backend's file handles."""
        self._reader.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _reported_mpp(reader: SlideBackend, path: Path) -> tuple[float, float] | None:
    """The backend's own level-0 mpp; a failing user backend becomes a :class:`SlideError` naming it."""
    try:
        return reader.mpp
    except Exception as error:
        name = backend_name(type(reader))
        raise SlideError(f"{path}: backend {name} cannot report the mpp: {error}") from error
