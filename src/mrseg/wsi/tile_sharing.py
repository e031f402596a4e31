"""Which tiles of a pyramid's pages go to the TIFF with their pixels, and which point to a flat tile's bytes.

A TIFF page has one tile offset and byte count per tile position. :class:`FlatSharing` hands the TIFF
writer each level's tiles in row-major order (:meth:`FlatSharing.stream`): a tile with pixels as
its pixels, the first tile of each flat content (and the first tile of each page, which tifffile
needs as pixels) too, and every other flat tile as None, which tifffile records as empty. After
writing, :meth:`FlatSharing.repeats` says, page by page, which positions are those repeats and
which encoded tile each repeats, for :func:`mrseg.wsi.tiff.share_flat_tiles` to point them at
its bytes. Runs of repeats are handed over as :func:`itertools.repeat` of None, and the
positions are found with array operations on the level grids, so a blank position costs no
Python of mrseg's own: the work is proportional to the tiles that hold anything.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Protocol

import numpy as np

from mrseg.wsi.pyramid_tiles import STORED, UNREAD, Flat, FlatTable, Halver, flat_or_array


class TileSource(Protocol):
    """Where the pixels of a level's tiles are: the image for level 0, a spill for the others."""

    def get(self, row: int, col: int) -> np.ndarray: ...


class FlatSharing:
    """The flat tiles of one pyramid: where each content is encoded, and every page's grid once written.

    Parameters
    ----------
    table
        The pyramid's flat tiles (the numbers in the grids).
    tile
        Tile edge in pixels (tiles at the edges are zero-padded to it).
    grey
        Whether pages are ``(h, w)`` (tiles handed over as ``(tile, tile)``).
    """

    def __init__(self, table: FlatTable, tile: int, grey: bool) -> None:
        self.table, self.tile, self.grey = table, tile, grey
        #: Flat number -> (page, tile index) of the tile encoded with its pixels.
        self.sources: dict[int, tuple[int, int]] = {}
        #: The grid of every page streamed so far (final once its stream is consumed).
        self.grids: list[np.ndarray] = []
        #: Tiles handed over with their pixels.
        self.encoded = 0

    def stream(
        self, page: int, grid: np.ndarray, tiles: TileSource, halver: Halver | None
    ) -> Iterator[np.ndarray | None]:
        """The TIFF tiles of page ``page`` in row-major order: padded pixels, or None for a repeated flat tile.

        ``grid`` is the level's grid (:data:`~mrseg.wsi.pyramid_tiles.UNREAD` positions are read from
        ``tiles`` and settled in place, as flat or :data:`~mrseg.wsi.pyramid_tiles.STORED`); the
        pixels of every stored tile are also fed to ``halver``.
        """
        self.grids.append(grid)
        cells = grid.reshape(-1)  # a view: settling a position updates the grid
        values, firsts = np.unique(cells, return_index=True)
        pairs = zip(values.tolist(), firsts.tolist(), strict=True)
        unsourced = [int(i) for v, i in pairs if v >= 0 and v not in self.sources]
        events = np.union1d(np.flatnonzero(cells < 0), np.array([0, *unsourced], dtype=np.int64))
        return itertools.chain.from_iterable(self._chunks(page, cells, grid.shape[1], events, tiles, halver))

    def _chunks(
        self,
        page: int,
        cells: np.ndarray,
        cols: int,
        events: np.ndarray,
        tiles: TileSource,
        halver: Halver | None,
    ) -> Iterator[Iterable[np.ndarray | None]]:
        done = 0
        for position in events.tolist():
            if position > done:
                yield itertools.repeat(None, position - done)
            yield (self._tile(page, cells, position, cols, tiles, halver),)
            done = position + 1
        if cells.size > done:
            yield itertools.repeat(None, cells.size - done)

    def _tile(
        self, page: int, cells: np.ndarray, position: int, cols: int, tiles: TileSource, halver: Halver | None
    ) -> np.ndarray | None:
        entry = int(cells[position])
        if entry < 0:
            row, col = divmod(position, cols)
            pixels = tiles.get(row, col)
            if entry == UNREAD:
                settled = flat_or_array(pixels)
                entry = self.table.id(settled) if isinstance(settled, Flat) else STORED
                cells[position] = entry
            if entry == STORED:
                if halver is not None:
                    halver.add(row, col, pixels)
                return self._padded(pixels)
        if entry not in self.sources:
            self.sources[entry] = (page, position)
        elif position > 0:  # (tifffile needs the first tile of a page as pixels)
            return None
        return self._padded(self.table.flats[entry].array())

    def _padded(self, tile: np.ndarray) -> np.ndarray:
        self.encoded += 1
        t = np.asarray(tile)
        if t.shape[0] != self.tile or t.shape[1] != self.tile:
            padded = np.zeros((self.tile, self.tile, *t.shape[2:]), dtype=t.dtype)
            padded[: t.shape[0], : t.shape[1]] = t
            t = padded
        return t.reshape(self.tile, self.tile) if self.grey else t

    def repeats(self, page: int) -> tuple[np.ndarray, np.ndarray]:
        """``(positions, flat numbers)`` of page ``page``'s tiles written as None (repeats of an encoded tile)."""
        cells = self.grids[page].reshape(-1)
        repeat = cells >= 0
        repeat[0] = False
        for source_page, index in self.sources.values():
            if source_page == page:
                repeat[index] = False
        positions = np.flatnonzero(repeat)
        return positions, cells[positions]


__all__ = ["FlatSharing", "TileSource"]
