"""Pyramidal tiled TIFF writer (the on-disk format of synthetic slides, masks and probability maps).

Files are written with :mod:`tifffile` as a chain of tiled pages, level 0 first, each halved in
size, with resolution tags in pixels per centimetre so that OpenSlide's generic-tiff driver and
tiffslide both report the levels and ``mpp``. Memory stays bounded: level 0 may be any array-like
that supports slicing (numpy array, ``numpy.memmap``, zarr array) and reduced levels are computed
strip by strip into temporary memory maps.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile

from mrseg.core.atomic import atomic_path

log = logging.getLogger(__name__)

Downsample = Literal["mean", "nearest", "max"]

_STRIP_BYTES = 16 * 1024 * 1024


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
    if not mpp or mpp <= 0 or not np.isfinite(mpp):
        raise ValueError(f"mpp must be a positive number, got {mpp!r}")
    if tile % 16:
        raise ValueError(f"tile must be a multiple of 16, got {tile}")
    shape = tuple(int(s) for s in level0.shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"expected a (H, W) or (H, W, C) image, got shape {shape}")
    dtype = np.dtype(level0.dtype)
    channels = 1 if len(shape) == 2 else shape[2]
    rgb = channels in (3, 4)
    if compression == "jpeg" and not (channels == 3 and dtype == np.uint8):
        compression = "zlib"
    compressionargs = {"level": quality} if compression == "jpeg" else None
    photometric = "rgb" if rgb else "minisblack"
    extrasamples = ("unassalpha",) if channels == 4 else None
    px_per_cm = 1e4 / mpp
    shapes = pyramid_shapes(shape[0], shape[1], min_size=min_size)
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="mrseg-pyramid-") as scratch, atomic_path(path) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=_needs_bigtiff(shape, dtype)) as tw:
            current: Any = level0
            for index, (h, w) in enumerate(shapes):
                if index > 0:
                    current = _halve(current, downsample, Path(scratch) / f"level{index}.npy")
                factor = 2**index
                tw.write(
                    _tiles(current, tile),
                    shape=(h, w, channels) if len(shape) == 3 else (h, w),
                    dtype=dtype,
                    tile=(tile, tile),
                    compression=compression,
                    compressionargs=compressionargs,
                    photometric=photometric,
                    extrasamples=extrasamples,
                    resolution=(px_per_cm / factor, px_per_cm / factor),
                    resolutionunit="CENTIMETER",
                    subfiletype=0 if index == 0 else 1,
                    description=description if index == 0 else None,
                    metadata=None,
                )
        log.debug("wrote %s: %d levels, level 0 %s at %.4g mpp", path, len(shapes), shape, mpp)
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
