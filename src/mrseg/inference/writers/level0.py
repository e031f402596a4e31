"""Maps on the slide's own pixel grid (writer ``level0``), for viewers that overlay images of the slide's size.

ASAP (and a QuPath overlay) lays a second image over a slide pixel for pixel, so the map must have the
slide's level-0 size. ``<stem>_level0.tif`` (key ``map_level0``): the foreground probability
(``uint8`` = p x 255, whatever the map's encoding) as a tiled (256 px, zlib) pyramidal TIFF of exactly
``W0 x H0`` pixels with the slide's mpp; multi-class tasks add ``<stem>_labels_level0.tif``
(``labels_level0``, the label map). Level ``k`` has ``ceil(W0 / 2**k)`` columns, pixel ``(u, v)``
covering level-0 ``[u * 2**k, (u + 1) * 2**k)``: levels finer than the map show the map pixel
containing each pixel centre (nearest: the map's blocks, aligned exactly); coarser levels average the
map over each pixel's area (labels: nearest at every level).

Memory stays bounded: each level is made one strip of tile rows at a time from the on-disk map, and
every all-zero tile (background, out of the tissue) is one shared pre-compressed tile.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from mrseg.core.atomic import atomic_path
from mrseg.core.encoding import UINT8, ProbabilityEncoding
from mrseg.core.label_spec import LabelSpec
from mrseg.inference.writers.base import WriteJob, Writer, register_writer
from mrseg.wsi.geometry import LEVEL_TOLERANCE, ReadGrid, sample_nearest
from mrseg.wsi.resample import resample
from mrseg.wsi.tiff import PyramidPlan, plan_pyramid, write_level

TILE_PX = 256
ZLIB_LEVEL = 6


def level_grid(plan: PyramidPlan, index: int) -> ReadGrid:
    """The grid of pyramid level ``index``: ``2**index`` level-0 pixels per pixel, from the slide's corner."""
    h, w = plan.shapes[index]
    s = float(2**index)
    return ReadGrid((0.0, 0.0, w * s, h * s), (w, h))


def strip_values(
    source: Any, encoding: ProbabilityEncoding, map_grid: ReadGrid, strip: ReadGrid, mean: bool
) -> np.ndarray:
    """``uint8`` values of ``source`` (a map on ``map_grid``) on ``strip``: nearest, or area means when ``mean``."""
    if not mean or strip.scale[0] <= map_grid.scale[0] * (1 + LEVEL_TOLERANCE):
        values = sample_nearest(source, map_grid, strip, fill=0)
        return values if values.dtype == np.uint8 else UINT8.encode(encoding.decode(values))
    d = map_grid.scale[0]
    x0, y0, x1, y1 = (v / d for v in strip.box_l0)  # the strip in map pixels
    r0, r1 = max(0, int(np.floor(y0)) - 1), min(map_grid.height, int(np.ceil(y1)) + 1)
    if r1 <= r0:
        return np.zeros(strip.shape, np.uint8)
    canvas = np.asarray(source[r0:r1])
    if canvas.dtype != np.uint8:
        canvas = UINT8.encode(encoding.decode(canvas))
    if not canvas.any():
        return np.zeros(strip.shape, np.uint8)
    return resample(canvas, (0, r0), (x0, y0, x1, y1), strip.size_px)


def encoded_tiles(level: np.ndarray, tile: int, blank: bytes) -> Iterator[bytes]:
    """The zlib-compressed ``tile x tile`` tiles of a ``tile``-row strip, zero-padded; all-zero tiles are ``blank``."""
    for x in range(0, level.shape[1], tile):
        t = level[:, x : x + tile]
        if not t.any():
            yield blank
            continue
        if t.shape != (tile, tile):
            t = np.pad(t, ((0, tile - t.shape[0]), (0, tile - t.shape[1])))
        yield zlib.compress(np.ascontiguousarray(t).tobytes(), ZLIB_LEVEL)


def level_tiles(
    source: Any, encoding: ProbabilityEncoding, map_grid: ReadGrid, grid: ReadGrid, mean: bool, tile: int
) -> Iterator[bytes]:
    """Every tile of one level (on ``grid``), row by row, made from ``source`` one strip at a time."""
    blank = zlib.compress(bytes(tile * tile), ZLIB_LEVEL)
    for v0 in range(0, grid.height, tile):
        v1 = min(grid.height, v0 + tile)
        strip = np.zeros((tile, grid.width), np.uint8)
        strip[: v1 - v0] = strip_values(source, encoding, map_grid, grid.rows(v0, v1), mean)
        yield from encoded_tiles(strip, tile, blank)


def write_on_slide_grid(
    path: str | os.PathLike[str],
    source: Any,
    encoding: ProbabilityEncoding,
    pixel_l0: float,
    dimensions_l0: tuple[int, int],
    slide_mpp: float,
    *,
    mean: bool = True,
    description: str,
) -> Path:
    """Write ``source`` (a map of ``pixel_l0`` level-0 px per pixel) as a pyramidal TIFF of the slide's size.

    Parameters
    ----------
    path
        Destination ``.tif`` (written atomically).
    source
        Array-like map (numpy, zarr or a map view), stored values in ``encoding``.
    pixel_l0
        Level-0 pixels per map pixel (``map mpp / slide mpp``).
    dimensions_l0, slide_mpp
        The slide's level-0 ``(width, height)`` and microns per pixel (the TIFF's size and resolution).
    mean
        Average the map over coarser levels' pixels (probabilities); False: nearest (labels).
    description
        ImageDescription of level 0.
    """
    w0, h0 = dimensions_l0
    plan = plan_pyramid((h0, w0), np.dtype(np.uint8), slide_mpp, tile=TILE_PX, compression="zlib")
    map_grid = ReadGrid.of_map(tuple(int(s) for s in source.shape[:2]), pixel_l0)
    path = Path(path)
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=plan.bigtiff) as tw:
        for index in range(len(plan.shapes)):
            tiles = level_tiles(source, encoding, map_grid, level_grid(plan, index), mean, plan.tile)
            write_level(tw, plan, index, tiles, description)
    return path


@register_writer
class SlideGridWriter(Writer):
    """``<stem>_level0.tif`` (+ ``<stem>_labels_level0.tif`` for multi-class tasks)."""

    name = "level0"
    concurrent = True

    def outputs(self, stem: str, labels: LabelSpec) -> dict[str, str]:
        names = {"map_level0": f"{stem}_level0.tif"}
        if not labels.is_binary:
            names["labels_level0"] = f"{stem}_labels_level0.tif"
        return names

    def write(self, job: WriteJob) -> dict[str, Any]:
        pred, pmap = job.prediction, job.prediction.map
        pixel_l0 = pmap.mpp / pred.slide_mpp
        where = (pred.slide_dimensions, pred.slide_mpp)
        text = "mrseg probability map on the slide's level-0 grid (uint8: probability x 255)"
        foreground = pmap.foreground()
        write_on_slide_grid(job.path("map_level0"), foreground, pmap.encoding, pixel_l0, *where, description=text)
        if not job.labels.is_binary:
            legend = ", ".join(f"{k} {name}" for k, name in enumerate(job.labels.classes))
            text = f"mrseg label map on the slide's level-0 grid (uint8: {legend})"
            write_on_slide_grid(
                job.path("labels_level0"), pmap.labels(), UINT8, pixel_l0, *where, mean=False, description=text
            )
        return {}


__all__ = ["SlideGridWriter", "level_grid", "strip_values", "write_on_slide_grid"]
