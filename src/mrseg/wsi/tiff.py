"""TIFF files: the pyramidal writer (synthetic slides, masks, probability maps) and what backends read back.

Files are written with :mod:`tifffile` as a chain of tiled pages, level 0 first, each halved in
size, with resolution tags in pixels per centimetre so that OpenSlide's generic-tiff driver and
tiffslide both report the levels and ``mpp``. Memory stays bounded: level 0 may be any array-like
that supports slicing (numpy array, ``numpy.memmap``, zarr array) and reduced levels are computed
strip by strip into temporary memory maps. :func:`write_pyramidal_tiff` is a plan
(:func:`plan_pyramid`), the levels (:func:`pyramid_levels`) and one write per level
(:func:`write_level`).

Reading: :func:`resolution_mpp` turns the resolution tags of any TIFF back into microns per
pixel (the slide backends' fallback when their own metadata has none), and
:func:`check_tiff_integrity` refuses truncated files before a backend is asked to decode them.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile

from mrseg.core.atomic import atomic_path
from mrseg.core.errors import SlideError

log = logging.getLogger(__name__)

Downsample = Literal["mean", "nearest", "max"]

_STRIP_BYTES = 16 * 1024 * 1024
#: First four bytes of little/big-endian classic TIFF and BigTIFF files.
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: Plausible microns per pixel of a scan; resolution tags outside (a 72-dpi default) are ignored.
MPP_RANGE = (0.01, 100.0)


def pyramid_shapes(height: int, width: int, *, min_size: int = 256) -> list[tuple[int, int]]:
    """Return ``(height, width)`` of every pyramid level, halving (rounding up) until both fit ``min_size``.

    >>> pyramid_shapes(1000, 600, min_size=256)
    [(1000, 600), (500, 300), (250, 150)]
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    shapes = [(height, width)]
    while max(shapes[-1]) > min_size:
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


def _reduce2(block: np.ndarray, mode: Downsample) -> np.ndarray:
    """Halve a (h, w[, c]) block; odd edges are padded by edge replication."""
    h, w = block.shape[:2]
    pad_h, pad_w = h % 2, w % 2
    if pad_h or pad_w:
        pad = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (block.ndim - 2)
        block = np.pad(block, pad, mode="edge")
    if mode == "nearest":
        return block[::2, ::2]
    quads = np.stack([block[0::2, 0::2], block[1::2, 0::2], block[0::2, 1::2], block[1::2, 1::2]])
    if mode == "max":
        return quads.max(axis=0)
    if block.dtype == np.uint8:
        # Exact round-half-to-even of the 2x2 mean in uint16 (a quarter of float32's memory).
        total = quads.astype(np.uint16).sum(axis=0, dtype=np.uint16)
        quotient, remainder = total >> 2, total & 3
        round_up = (remainder > 2) | ((remainder == 2) & (quotient & 1 == 1))
        return (quotient + round_up).astype(np.uint8)
    mean = quads.astype(np.float32).mean(axis=0)
    if np.issubdtype(block.dtype, np.integer):
        return np.rint(mean).astype(block.dtype)
    return mean.astype(block.dtype)


def _tiles(level: Any, tile: int) -> Iterator[np.ndarray]:
    """Yield ``tile x tile`` tiles of ``level`` in row-major order, zero-padded at the edges."""
    h, w = level.shape[:2]
    for y in range(0, h, tile):
        strip = np.asarray(level[y : y + tile])
        for x in range(0, w, tile):
            t = strip[:, x : x + tile]
            if t.shape[0] != tile or t.shape[1] != tile:
                padded = np.zeros((tile, tile, *t.shape[2:]), dtype=t.dtype)
                padded[: t.shape[0], : t.shape[1]] = t
                t = padded
            yield t


@dataclass(frozen=True)
class PyramidPlan:
    """What :func:`write_pyramidal_tiff` decides before writing a pixel.

    Attributes
    ----------
    shapes
        ``(height, width)`` of every level, level 0 first (:func:`pyramid_shapes`).
    channels
        Samples per pixel (1 for a ``(H, W)`` image).
    grey
        One sample per pixel: pages are written as ``(h, w)`` (a ``(H, W, 1)`` image is squeezed).
    dtype
        Pixel type of every level.
    tile
        Tile edge in pixels.
    px_per_cm
        Resolution of level 0 in pixels per centimetre (level ``k`` has ``px_per_cm / 2**k``).
    page
        The :meth:`tifffile.TiffWriter.write` options shared by every level (compression,
        photometric interpretation, extra samples).
    bigtiff
        Whether level 0 alone exceeds 2 GiB (BigTIFF offsets).
    """

    shapes: tuple[tuple[int, int], ...]
    channels: int
    grey: bool
    dtype: np.dtype
    tile: int
    px_per_cm: float
    page: dict[str, Any]
    bigtiff: bool

    def level_shape(self, index: int) -> tuple[int, ...]:
        """Page shape of level ``index``: ``(h, w)`` or ``(h, w, channels)``."""
        h, w = self.shapes[index]
        return (h, w) if self.grey else (h, w, self.channels)


def plan_pyramid(
    shape: tuple[int, ...],
    dtype: np.dtype,
    mpp: float,
    *,
    tile: int = 256,
    compression: str | None = "jpeg",
    quality: int = 90,
    min_size: int = 256,
) -> PyramidPlan:
    """Check the arguments of :func:`write_pyramidal_tiff` and derive its levels and page options (no I/O)."""
    if not mpp or mpp <= 0 or not np.isfinite(mpp):
        raise ValueError(f"mpp must be a positive number, got {mpp!r}")
    if tile % 16:
        raise ValueError(f"tile must be a multiple of 16, got {tile}")
    if len(shape) not in (2, 3):
        raise ValueError(f"expected a (H, W) or (H, W, C) image, got shape {shape}")
    channels = 1 if len(shape) == 2 else shape[2]
    if compression == "jpeg" and not (channels == 3 and dtype == np.uint8):
        compression = "zlib"  # labels and probabilities must never be lossy
    page = {
        "compression": compression,
        "compressionargs": {"level": quality} if compression == "jpeg" else None,
        "photometric": "rgb" if channels in (3, 4) else "minisblack",
        "extrasamples": ("unassalpha",) if channels == 4 else None,
    }
    return PyramidPlan(
        shapes=tuple(pyramid_shapes(shape[0], shape[1], min_size=min_size)),
        channels=channels,
        grey=channels == 1,
        dtype=dtype,
        tile=tile,
        px_per_cm=1e4 / mpp,
        page=page,
        bigtiff=_needs_bigtiff(shape, dtype),
    )


def pyramid_levels(level0: Any, plan: PyramidPlan, downsample: Downsample, scratch: Path) -> Iterator[Any]:
    """Yield level 0, then each reduced level, computed from the previous one just before it is needed."""
    current: Any = level0
    for index in range(len(plan.shapes)):
        if index > 0:
            current = _halve(current, downsample, scratch / f"level{index}.npy")
        yield current


def write_level(
    tw: tifffile.TiffWriter,
    plan: PyramidPlan,
    index: int,
    level: Any,
    description: str | None,
    encoded: Iterator[bytes] | None = None,
) -> None:
    """Append level ``index`` (tiled, with its resolution tags) to an open TIFF.

    ``encoded``: the level's tiles already compressed as ``plan.page`` says (row-major, each a full
    ``plan.tile`` square), written as they are (``level`` is then not read).
    """
    resolution = plan.px_per_cm / 2**index
    tiles: Iterator[Any]
    if encoded is not None:
        tiles = encoded
    else:
        arrays = _tiles(level, plan.tile)
        tiles = (t.reshape(plan.tile, plan.tile) for t in arrays) if plan.grey else arrays
    tw.write(
        tiles,
        shape=plan.level_shape(index),
        dtype=plan.dtype,
        tile=(plan.tile, plan.tile),
        **plan.page,
        resolution=(resolution, resolution),
        resolutionunit="CENTIMETER",
        subfiletype=0 if index == 0 else 1,
        description=description if index == 0 else None,
        metadata=None,
    )


def write_pyramidal_tiff(
    path: str | os.PathLike[str],
    level0: Any,
    mpp: float,
    *,
    tile: int = 256,
    compression: str | None = "jpeg",
    quality: int = 90,
    downsample: Downsample = "mean",
    min_size: int = 256,
    description: str | None = None,
) -> Path:
    """Write ``level0`` as a tiled pyramidal TIFF with its mpp, atomically.

    Parameters
    ----------
    path
        Destination ``.tif``; written under a temporary name and renamed when complete.
    level0
        Level-0 image, ``(H, W)`` or ``(H, W, C)`` (C = 1, 3 or 4), any array-like with slicing.
        RGB(A) images must be ``uint8`` for JPEG compression.
    mpp
        Microns per pixel of ``level0`` (isotropic). Stored as resolution tags in px/cm.
    tile
        Tile edge in pixels (multiple of 16).
    compression
        ``"jpeg"`` (RGB uint8), ``"zlib"``, ``"lzw"``, ``None``...; JPEG falls back to zlib for
        non-RGB data (labels must never be lossy).
    quality
        JPEG quality.
    downsample
        How reduced levels are made: ``"mean"`` for images and probabilities, ``"nearest"`` or
        ``"max"`` for label masks.
    min_size
        Stop adding levels when both sides of the last one are at most this many pixels.
    description
        Optional ImageDescription of level 0.

    Returns
    -------
    Path
        The final path.
    """
    shape = tuple(int(s) for s in level0.shape)
    plan = plan_pyramid(
        shape, np.dtype(level0.dtype), mpp, tile=tile, compression=compression, quality=quality, min_size=min_size
    )
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="mrseg-pyramid-") as scratch, atomic_path(path) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=plan.bigtiff) as tw:
            for index, level in enumerate(pyramid_levels(level0, plan, downsample, Path(scratch))):
                write_level(tw, plan, index, level, description)
        log.debug("wrote %s: %d levels, level 0 %s at %.4g mpp", path, len(plan.shapes), shape, mpp)
    return path


def _needs_bigtiff(shape: tuple[int, ...], dtype: np.dtype) -> bool:
    return int(np.prod(shape)) * dtype.itemsize > 2**31


def _halve(level: Any, mode: Downsample, scratch: Path) -> np.ndarray:
    """Compute the next pyramid level strip by strip into a memory map (bounded memory)."""
    h, w = level.shape[:2]
    out_shape = ((h + 1) // 2, (w + 1) // 2, *level.shape[2:])
    out = np.lib.format.open_memmap(scratch, mode="w+", dtype=level.dtype, shape=out_shape)
    row_bytes = max(1, w * int(np.prod(level.shape[2:], dtype=np.int64)) * level.dtype.itemsize)
    step = max(2, (_STRIP_BYTES // row_bytes) // 2 * 2)
    for y in range(0, h, step):
        out[y // 2 : (y + step + 1) // 2] = _reduce2(np.asarray(level[y : y + step]), mode)
    out.flush()
    return out


# --------------------------------------------------------------------------------------------
# Reading back: integrity and resolution tags
# --------------------------------------------------------------------------------------------


def is_tiff(path: Path) -> bool:
    """Whether the file starts with a TIFF or BigTIFF header."""
    with open(path, "rb") as fh:
        return fh.read(4) in TIFF_MAGIC


def check_tiff_integrity(path: Path) -> None:
    """Raise :class:`SlideError` when a TIFF's tile/strip data run past the end of the file.

    Reads only the file header and the IFDs, so it is cheap; non-TIFF files are left to the
    backends.
    """
    if not is_tiff(path):
        return
    size = path.stat().st_size
    try:
        with tifffile.TiffFile(path) as tif:
            for index, page in enumerate(tif.pages):
                ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts, strict=False) if o]  # type: ignore[union-attr]
                if ends and max(ends) > size:
                    raise SlideError(
                        f"{path}: truncated or corrupt TIFF (image data of page {index} ends at byte "
                        f"{max(ends)}, file has {size} bytes)"
                    )
    except SlideError:
        raise
    except Exception as error:
        raise SlideError(f"{path}: corrupt TIFF ({error})") from error


def resolution_mpp(path: Path) -> tuple[float, float] | None:
    """``(mpp-x, mpp-y)`` from the resolution tags of a TIFF's first page (unit inch or centimetre).

    None when the file is not a TIFF, has no such tags, or gives values outside :data:`MPP_RANGE`.
    """
    try:
        with tifffile.TiffFile(path) as tif:
            tags = tif.pages.first.tags
            unit = tags.get("ResolutionUnit")
            xres, yres = tags.get("XResolution"), tags.get("YResolution")
            if unit is None or xres is None or yres is None:
                return None
            per_unit = {2: 25400.0, 3: 10000.0}.get(int(unit.value))
            if per_unit is None:
                return None
            values = []
            for tag in (xres, yres):
                num, den = tag.value
                if not num or not den:
                    return None
                values.append(per_unit * den / num)
    except Exception as error:  # not a TIFF, or unreadable tags: simply no mpp from here
        log.debug("no TIFF resolution tags in %s: %r", path, error)
        return None
    if not all(MPP_RANGE[0] <= v <= MPP_RANGE[1] for v in values):
        return None
    return (values[0], values[1])
