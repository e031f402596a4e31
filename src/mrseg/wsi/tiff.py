"""TIFF files: the pyramidal writer (synthetic slides, masks, probability maps) and what backends read back.

Files are written with :mod:`tifffile` as a chain of tiled pages, level 0 first, each halved in
size, with resolution tags in pixels per centimetre so that OpenSlide's generic-tiff driver and
tiffslide both report the levels and ``mpp``. Memory stays bounded: level 0 may be any array-like
that supports slicing (numpy array, ``numpy.memmap``, zarr array, a sparse probability map) and
reduced levels are built tile by tile from the level before into a scratch file
(:mod:`mrseg.wsi.pyramid_tiles`); tiles whose pixels are all equal are encoded once and shared
(:class:`mrseg.wsi.tile_sharing.FlatSharing`, :func:`share_flat_tiles`).
:func:`write_pyramidal_tiff` is a plan (:func:`plan_pyramid`) and one write per level
(:func:`write_level`).

Reading: :func:`resolution_mpp` turns the resolution tags of any TIFF back into microns per
pixel (the slide backends' fallback when their own metadata has none), and
:func:`check_tiff_integrity` refuses truncated files before a backend is asked to decode them.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
import tifffile

from mrseg.core.atomic import atomic_path
from mrseg.core.errors import SlideError
from mrseg.wsi.pyramid_tiles import (
    Downsample,
    FlatTable,
    Halver,
    ImageTiles,
    TileSpill,
    content_tiles,
    fill_grid,
    level0_grid,
)
from mrseg.wsi.tile_sharing import FlatSharing, TileSource

log = logging.getLogger(__name__)

#: Threads encoding tiles (tifffile's ``maxworkers``) and the most bytes of tiles they hold at once.
ENCODE_THREADS = min(4, os.cpu_count() or 1)
ENCODE_BUFFER_BYTES = 32 * 1024 * 1024
#: A level is encoded on :data:`ENCODE_THREADS` threads only when at least this share of its tile
#: positions hold pixels to encode. tifffile hands every position, even a shared blank one, to its
#: thread pool (about 50 µs each on the development machine against about 1 ms to compress a
#: 256-px tile), so a mostly blank level is written faster on one thread.
THREADED_MIN_SHARE = 1 / 8
#: numpy type of the TIFF field types of tile offsets and byte counts (SHORT, LONG, LONG8).
_TAG_TYPES = {3: "u2", 4: "u4", 16: "u8"}
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


def encode_threads(content: int, positions: int) -> int:
    """Threads to encode a level of ``positions`` tiles of which ``content`` hold pixels.

    :data:`ENCODE_THREADS` when ``content`` is at least :data:`THREADED_MIN_SHARE` of ``positions``, else 1.
    """
    return ENCODE_THREADS if content >= THREADED_MIN_SHARE * positions else 1


def write_level(
    tw: tifffile.TiffWriter,
    plan: PyramidPlan,
    index: int,
    tiles: Iterator[Any],
    description: str | None,
    threads: int = ENCODE_THREADS,
) -> None:
    """Append level ``index`` (tiled, with its resolution tags) to an open TIFF.

    ``tiles`` yields the level's ``tile x tile`` tiles in row-major order (zero-padded at the
    edges), or None for a tile whose bytes are given later by :func:`share_flat_tiles`; ``threads``
    encode them.
    """
    resolution = plan.px_per_cm / 2**index
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
        maxworkers=threads,
        buffersize=ENCODE_BUFFER_BYTES,
    )


_P = ParamSpec("_P")
_R = TypeVar("_R")


def frees_tiff_cycles(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``fn`` (which opens and closes a :class:`tifffile.TiffFile`), then collect the young garbage.

    tifffile's pages and their file refer to each other, so a closed ``TiffFile`` is freed only by the
    garbage collector, with every page's tag values: the tile offsets and byte counts as Python ints,
    about 70 bytes per tile (21 MB for the level 0 of a 100,000 x 200,000 px slide). Left to the
    collector, they stay until a full collection, long after, once per slide opening (three per
    ``mrseg predict``: the slide and its two loaders). While ``fn`` runs, the collector's automatic
    runs are held off (:func:`gc.disable`, process-wide, restored by the last of any concurrent
    callers): another thread's allocations, the tile loop's among them, would otherwise trigger
    collections that move the young cycles to the oldest generation, out of reach of the collection
    of the two youngest generations that frees them at once on return (about a millisecond, plus
    freeing the ints themselves); a loader's tile offsets were otherwise kept for a whole run.
    """

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        _hold_collector()
        try:
            return fn(*args, **kwargs)
        finally:
            _release_collector()
            gc.collect(1)

    return wrapper


_collector_lock = threading.Lock()
_collector_holds = 0
_collector_was_enabled = False


def _hold_collector() -> None:
    """Hold off automatic collections (the first of concurrent holders notes whether they were on)."""
    global _collector_holds, _collector_was_enabled
    with _collector_lock:
        if _collector_holds == 0:
            _collector_was_enabled = gc.isenabled()
            gc.disable()
        _collector_holds += 1


def _release_collector() -> None:
    """End one hold; the last one turns automatic collections back on if they were on before the first."""
    global _collector_holds
    with _collector_lock:
        _collector_holds -= 1
        if _collector_holds == 0 and _collector_was_enabled:
            gc.enable()


@frees_tiff_cycles
def share_flat_tiles(path: Path, sharing: FlatSharing) -> int:
    """Point each repeated flat tile's offset and byte count at its encoded tile's (in place, after writing).

    Returns how many positions were pointed. The offset arrays are read and written whole, with numpy.
    """
    if not sharing.sources:  # no flat tile, so no repeat
        return 0
    with tifffile.TiffFile(path) as tif:
        tags = []
        for i in range(len(tif.pages)):
            item = tif.pages[i]
            if not isinstance(item, tifffile.TiffPage):
                raise SlideError(f"{path}: unexpected TIFF frame {i} while sharing tiles")
            pair = (item.tags["TileOffsets"], item.tags["TileByteCounts"])
            tags.append([(t.valueoffset, t.count, f"{tif.byteorder}{_TAG_TYPES[int(t.dtype)]}") for t in pair])
    shared = 0
    with open(path, "r+b") as fh:
        arrays = [[_read_values(fh, *tag) for tag in page] for page in tags]
        source_offsets = np.zeros(len(sharing.table.flats), dtype=np.uint64)
        source_counts = np.zeros(len(sharing.table.flats), dtype=np.uint64)
        for flat, (page, index) in sharing.sources.items():
            source_offsets[flat] = arrays[page][0][index]
            source_counts[flat] = arrays[page][1][index]
        for page, ((offsets, counts), page_tags) in enumerate(zip(arrays, tags, strict=True)):
            positions, flats = sharing.repeats(page)
            if not len(positions):
                continue
            offsets[positions] = source_offsets[flats]
            counts[positions] = source_counts[flats]
            for values, (valueoffset, _, dtype) in zip((offsets, counts), page_tags, strict=True):
                fh.seek(valueoffset)
                fh.write(values.astype(dtype).tobytes())
            shared += len(positions)
    return shared


def _read_values(fh: Any, valueoffset: int, count: int, dtype: str) -> np.ndarray:
    """``count`` values of TIFF type ``dtype`` at byte ``valueoffset``, as ``uint64``."""
    fh.seek(valueoffset)
    return np.frombuffer(fh.read(count * np.dtype(dtype).itemsize), dtype=dtype).astype(np.uint64)


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
        RGB(A) images must be ``uint8`` for JPEG compression. An image with
        ``region_is_fill(y0, y1, x0, x1)`` and ``fill_value`` (a sparse map) is read only where
        it holds something (:func:`mrseg.wsi.pyramid_tiles.fill_grid`).
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

    Notes
    -----
    Tiles whose pixels are all equal (background, empty map regions) are encoded once per content
    and shared: every repeat's tile offset points to the same bytes, which every TIFF reader
    (OpenSlide, tiffslide, tifffile, libtiff) reads as the full tile. Reduced levels are built
    tile by tile from the level before (:class:`mrseg.wsi.pyramid_tiles.Halver`), flat tiles
    from the level grids alone, and repeats reach tifffile as runs of None
    (:class:`mrseg.wsi.tile_sharing.FlatSharing`), so mrseg's work is proportional to the tiles
    that hold anything; what a blank position still costs is tifffile's own loop over the
    positions (one tile offset each, as the format has; 0.7-1.3 µs a position on the development
    machine).
    """
    shape = tuple(int(s) for s in level0.shape)
    plan = plan_pyramid(
        shape, np.dtype(level0.dtype), mpp, tile=tile, compression=compression, quality=quality, min_size=min_size
    )
    path = Path(path)
    with (
        tempfile.TemporaryDirectory(prefix="mrseg-pyramid-") as scratch,
        atomic_path(path) as tmp,
        contextlib.ExitStack() as spills,
    ):
        table = FlatTable()
        sharing = FlatSharing(table, plan.tile, plan.grey)
        fills = fill_grid(level0, plan.tile)
        grid = level0_grid(level0, plan.tile, table, fills)
        tiles: TileSource = ImageTiles(level0, plan.tile, dense=fills is None)
        content = content_tiles(level0, plan.tile, fills)
        with tifffile.TiffWriter(tmp, bigtiff=plan.bigtiff) as tw:
            for index in range(len(plan.shapes)):
                halver = None
                if index + 1 < len(plan.shapes):
                    spill = TileSpill(Path(scratch), plan.tile, plan.dtype)
                    spills.callback(spill.close)  # on error; done level by level otherwise
                    halver = Halver(grid, plan.level_shape(index), plan.tile, downsample, table, spill)
                stream = sharing.stream(index, grid, tiles, halver)
                write_level(tw, plan, index, stream, description, encode_threads(content, grid.size))
                if isinstance(tiles, TileSpill):
                    tiles.close()
                if halver is not None:
                    grid = halver.finish()
                    tiles, content = halver.out, halver.out.stored
        shared = share_flat_tiles(tmp, sharing)
        log.debug(
            "wrote %s: %d levels, level 0 %s at %.4g mpp, %d tiles encoded, %d shared",
            path,
            len(plan.shapes),
            shape,
            mpp,
            sharing.encoded,
            shared,
        )
    return path


def _needs_bigtiff(shape: tuple[int, ...], dtype: np.dtype) -> bool:
    return int(np.prod(shape)) * dtype.itemsize > 2**31


# --------------------------------------------------------------------------------------------
# Reading back: integrity and resolution tags
# --------------------------------------------------------------------------------------------


def is_tiff(path: Path) -> bool:
    """Whether the file starts with a TIFF or BigTIFF header."""
    with open(path, "rb") as fh:
        return fh.read(4) in TIFF_MAGIC


@frees_tiff_cycles
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


@frees_tiff_cycles
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
