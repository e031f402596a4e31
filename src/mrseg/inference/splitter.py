"""Splitting: the tile grid of one slide, over its tissue (MONAI's ``monai/inferers/splitter.py``), pure geometry.

The **map** is the probability map at the model's finest mpp ``m1``: map pixel ``(u, v)`` covers
the level-0 area ``[u*d, (u+1)*d) x [v*d, (v+1)*d)`` with ``d = m1 / slide mpp`` (level-0 pixels
per map pixel). Tiles are ``S x S`` map pixels (``S`` = the checkpoint's patch size) on a regular
grid with stride ``round(S * (1 - overlap))``, starting at the slide's top-left corner; tiles
running past the right/bottom edge read white, as in training. The grid is cut into square
**chunks** of ``chunk_tiles x chunk_tiles`` tiles, whose tiles share their level reads
(:mod:`mrseg.inference.reader`). A filter (:func:`tissue_filter`) keeps only tiles touching tissue.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mrseg.wsi.tissue import TissueMask

#: A tile filter: level-0 boxes ``(n, 4)`` -> bool ``(n,)`` (True: predict the tile).
TileFilter = Callable[[np.ndarray], np.ndarray]


@dataclass
class Tiling:
    """The tile grid of one slide (see the module docstring).

    Attributes
    ----------
    map_shape
        ``(height, width)`` of the map in map pixels.
    map_mpp
        Microns per map pixel (the model's finest mpp).
    tile_px, stride_px
        Tile edge and grid stride in map pixels.
    origins_map
        int64 ``(n, 2)``: top-left ``(x, y)`` of each kept tile, map pixels.
    chunk_ids
        int64 ``(n,)``: the chunk of each kept tile.
    pixel_l0
        Level-0 pixels per map pixel (``map_mpp / slide mpp``).
    """

    map_shape: tuple[int, int]
    map_mpp: float
    tile_px: int
    stride_px: int
    origins_map: np.ndarray
    chunk_ids: np.ndarray
    pixel_l0: float

    @property
    def n_tiles(self) -> int:
        return len(self.origins_map)

    def centers_l0(self, index: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Level-0 ``(x, y)`` centres of tiles ``index`` (float64 ``(n, 2)``)."""
        return (self.origins_map[index].astype(np.float64) + self.tile_px / 2.0) * self.pixel_l0

    def boxes_l0(self, index: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Level-0 boxes ``(x0, y0, x1, y1)`` of tiles ``index`` (float64 ``(n, 4)``)."""
        o = self.origins_map[index].astype(np.float64)
        return np.concatenate([o, o + self.tile_px], axis=1) * self.pixel_l0

    def chunks(self) -> list[np.ndarray]:
        """Tile indices of every non-empty chunk, in row-major chunk order."""
        order = np.argsort(self.chunk_ids, kind="stable")
        ids = self.chunk_ids[order]
        cuts = np.flatnonzero(np.diff(ids)) + 1
        return [part for part in np.split(order, cuts) if len(part)]


def grid_positions(length: int, tile: int, stride: int) -> np.ndarray:
    """Tile starts ``0, stride, 2*stride, ...`` covering ``[0, length)`` (the last tile may overhang)."""
    n = 1 + max(0, math.ceil((length - tile) / stride))
    return np.arange(n, dtype=np.int64) * stride


def make_tiling(
    slide_dimensions: tuple[int, int],
    slide_mpp: float,
    map_mpp: float,
    tile: int,
    overlap: float,
    chunk_tiles: int,
    keep: TileFilter | None = None,
) -> Tiling:
    """Build the tile grid of a slide.

    Parameters
    ----------
    slide_dimensions
        ``(width, height)`` of level 0 in pixels.
    slide_mpp, map_mpp
        Microns per pixel of level 0 and of the map.
    tile, overlap, chunk_tiles
        Tile edge (map pixels), overlap fraction, chunk edge (tiles).
    keep
        Optional filter of the tiles by their level-0 boxes (e.g. :func:`tissue_filter`).
    """
    pixel_l0 = map_mpp / slide_mpp
    w0, h0 = slide_dimensions
    map_w, map_h = max(1, round(w0 / pixel_l0)), max(1, round(h0 / pixel_l0))
    stride = max(1, round(tile * (1.0 - overlap)))
    xs, ys = grid_positions(map_w, tile, stride), grid_positions(map_h, tile, stride)
    mx, my = np.meshgrid(np.arange(len(xs)), np.arange(len(ys)))
    gx, gy = mx.ravel(), my.ravel()
    origins = np.stack([xs[gx], ys[gy]], axis=1)
    n_chunk_cols = math.ceil(len(xs) / chunk_tiles)
    chunk_ids = (gy // chunk_tiles) * n_chunk_cols + gx // chunk_tiles
    tiling = Tiling((map_h, map_w), map_mpp, tile, stride, origins, chunk_ids.astype(np.int64), pixel_l0)
    if keep is not None and len(origins):
        mask = np.asarray(keep(tiling.boxes_l0()), dtype=bool)
        tiling.origins_map, tiling.chunk_ids = origins[mask], tiling.chunk_ids[mask]
    return tiling


def tissue_filter(mask: TissueMask) -> TileFilter:
    """Keep the tiles whose level-0 box holds any tissue of ``mask``."""

    def keep(boxes_l0: np.ndarray) -> np.ndarray:
        return np.asarray(mask.fraction_in_boxes(boxes_l0) > 0, dtype=bool)

    return keep


__all__ = ["TileFilter", "Tiling", "grid_positions", "make_tiling", "tissue_filter"]
