"""The tiles of an image pyramid, level by level, each level made from the tiles of the one before.

A level is a grid of tile positions (:func:`tile_grid`) and each position holds either a
:class:`Flat` tile (all pixels equal: the grid stores its number in the pyramid's
:class:`FlatTable`) or a tile with pixels. The pixels of a reduced level's tiles are kept in a
:class:`TileSpill` (a scratch file read back with ``pread``: nothing is memory mapped, so the
resident memory stays that of a couple of tile rows whatever the image size); level 0's come from
the image itself (:class:`ImageTiles`).

The pyramidal TIFF writer (:mod:`mrseg.wsi.tiff`) streams the tiles with pixels of a level, in
row-major order, into the file and into a :class:`Halver`, which makes from each 2x2 block of them
the next level's tile. Flat tiles never pass through Python one by one: a block of flat tiles of
one pixel value makes a flat parent by array operations on the grids (:func:`halve_grid`), so the
work is proportional to the tiles that hold anything. An image that says which regions hold only
its fill value (``region_is_fill(y0, y1, x0, x1)``, as the probability maps of
:mod:`mrseg.inference.store` do) is not even read there (:func:`fill_grid`). The halving of a
block is exactly :func:`reduce2` of the level's pixels, so every level is the same as halving the
whole level at once.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

Downsample = Literal["mean", "nearest", "max"]

#: A tile: its pixels ``(h, w[, c])`` (the part inside the level; edge tiles are smaller), or :class:`Flat`.
Tile = Any


@dataclass(frozen=True)
class Flat:
    """A tile of ``shape`` (``(h, w[, c])``) whose every pixel is ``pixel`` (``(c,)`` or ``()``, the level's dtype)."""

    pixel: np.ndarray
    shape: tuple[int, ...]

    @cached_property
    def key(self) -> tuple[bytes, tuple[int, ...]]:
        """Identifies the tile's content: equal keys, equal tiles (computed once per tile object)."""
        return (self.pixel.tobytes(), self.shape)

    def array(self) -> np.ndarray:
        """The tile's pixels."""
        return np.broadcast_to(self.pixel, self.shape)


def flat_or_array(tile: np.ndarray) -> Tile:
    """``tile`` as a :class:`Flat` tile when all its pixels are equal, else itself."""
    channels = tile.shape[2:]
    first = tile.reshape(-1, *channels)[0]
    if np.all(tile == first):
        return Flat(first.copy(), tuple(tile.shape))
    return tile


def reduce2(block: np.ndarray, mode: Downsample) -> np.ndarray:
    """Halve a ``(h, w[, c])`` block; odd edges are padded by edge replication.

    ``mean`` of ``uint8`` is the exact round-half-to-even of the 2x2 mean; ``nearest`` keeps the
    top-left pixel of each 2x2 block (label maps); ``max`` the largest.
    """
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


def tile_grid(shape: tuple[int, int], tile: int) -> tuple[int, int]:
    """``(rows, columns)`` of ``tile``-pixel tiles covering a ``(height, width)`` level."""
    return (-(-shape[0] // tile), -(-shape[1] // tile))


def fill_grid(image: Any, tile: int) -> np.ndarray | None:
    """``bool (rows, columns)``: which of ``image``'s level-0 tiles hold only its fill value; None for a dense image.

    For an image with ``region_is_fill(y0, y1, x0, x1)`` (a sparse map). Regions are asked about
    from the whole image down, halving a region's longer side while it holds something, so a
    mostly blank image costs a few calls per tile that holds something (and per tile of their
    outline) instead of one per tile position: a 100,000 x 200,000 px map has 305,000 positions of
    256 px. A tile is marked fill only when a region containing it is, which is exactly when the
    tile is (a part of a region of fill pixels is fill), or when it is asked about itself.
    """
    if not hasattr(image, "region_is_fill"):
        return None
    h, w = int(image.shape[0]), int(image.shape[1])
    rows, cols = tile_grid((h, w), tile)
    fills = np.zeros((rows, cols), dtype=bool)
    todo = [(0, rows, 0, cols)]  # tile index ranges [r0, r1) x [c0, c1)
    while todo:
        r0, r1, c0, c1 = todo.pop()
        if image.region_is_fill(r0 * tile, min(h, r1 * tile), c0 * tile, min(w, c1 * tile)):
            fills[r0:r1, c0:c1] = True
        elif r1 - r0 >= c1 - c0 and r1 - r0 > 1:
            todo += [(r0, (r0 + r1) // 2, c0, c1), ((r0 + r1) // 2, r1, c0, c1)]
        elif c1 - c0 > 1:
            todo += [(r0, r1, c0, (c0 + c1) // 2), (r0, r1, (c0 + c1) // 2, c1)]
    return fills


def content_tiles(image: Any, tile: int, fills: np.ndarray | None = None) -> int:
    """How many of ``image``'s level-0 tiles may hold something: those ``region_is_fill`` does not rule out.

    Every tile of an image without ``region_is_fill`` (a dense array) counts. ``fills`` is
    :func:`fill_grid` of the image when already known.
    """
    rows, cols = tile_grid((int(image.shape[0]), int(image.shape[1])), tile)
    fills = fill_grid(image, tile) if fills is None else fills
    return rows * cols if fills is None else rows * cols - int(fills.sum())


#: Grid value of a position whose tile has pixels (kept in the level's spill, or level 0's image).
STORED = -1
#: Grid value of a level-0 position not read yet (it may turn out flat when read).
UNREAD = -2


def shape_classes(
    grid: tuple[int, int], shape: tuple[int, int], tile: int
) -> Iterator[tuple[slice, slice, tuple[int, int]]]:
    """A ``(rows, columns)`` tile grid of a ``(height, width)`` level split by tile shape.

    Yields ``(row slice, column slice, (tile height, tile width))`` for the interior, the last column,
    the last row and the corner, in that order (a part may be empty).
    """
    rows, cols = grid
    for last_row in (False, True):
        for last_col in (False, True):
            rsel = slice(rows - 1, rows) if last_row else slice(0, rows - 1)
            csel = slice(cols - 1, cols) if last_col else slice(0, cols - 1)
            height = shape[0] - (rows - 1) * tile if last_row else tile
            width = shape[1] - (cols - 1) * tile if last_col else tile
            yield rsel, csel, (height, width)


class FlatTable:
    """Every distinct :class:`Flat` tile of a pyramid, numbered in the order they are met.

    Level grids hold these numbers (``>= 0``); :meth:`pixel_ids` numbers the pixel values, so that
    tiles of one value but different shapes (edge tiles) are told to be alike.
    """

    def __init__(self) -> None:
        self.flats: list[Flat] = []
        self._ids: dict[tuple[bytes, tuple[int, ...]], int] = {}
        self._pixels: dict[bytes, int] = {}
        self._pixel_of: list[int] = []
        #: The pixel value (``(c,)`` or ``()``) of each pixel number.
        self.pixels: list[np.ndarray] = []

    def id(self, flat: Flat) -> int:
        """The number of ``flat``'s content (a new one the first time it is met)."""
        found = self._ids.get(flat.key)
        if found is None:
            found = self._ids[flat.key] = len(self.flats)
            self.flats.append(flat)
            if flat.key[0] not in self._pixels:
                self._pixels[flat.key[0]] = len(self.pixels)
                self.pixels.append(flat.pixel)
            self._pixel_of.append(self._pixels[flat.key[0]])
        return found

    def pixel_ids(self) -> np.ndarray:
        """``int32 (len(flats),)``: the number of each flat tile's pixel value."""
        return np.array(self._pixel_of, dtype=np.int32)


def level0_grid(image: Any, tile: int, table: FlatTable, fills: np.ndarray | None) -> np.ndarray:
    """``int32 (rows, columns)`` of level 0: fill tiles as their :class:`FlatTable` number, the rest :data:`UNREAD`.

    ``fills`` is the image's :func:`fill_grid` (None for a dense image: every position unread).
    """
    h, w = int(image.shape[0]), int(image.shape[1])
    rows, cols = tile_grid((h, w), tile)
    grid = np.full((rows, cols), UNREAD, dtype=np.int32)
    if fills is None or not fills.any():
        return grid
    trailing = tuple(int(s) for s in image.shape[2:])
    pixel = np.full(trailing, image.fill_value, dtype=image.dtype)
    for rsel, csel, shape in shape_classes((rows, cols), (h, w), tile):
        part = fills[rsel, csel]
        if part.any():
            grid[rsel, csel][part] = table.id(Flat(pixel, (*shape, *trailing)))
    return grid


class ImageTiles:
    """Level 0's tiles with pixels, read from the image (``(H, W[, C])`` array-like) at tile ``(row, col)``.

    A dense image (no ``region_is_fill``) is read in strips of one tile row, kept while its tiles are read.
    """

    def __init__(self, image: Any, tile: int, dense: bool) -> None:
        self.image, self.tile, self.dense = image, tile, dense
        self.h, self.w = int(image.shape[0]), int(image.shape[1])
        self._strip: tuple[int, np.ndarray] | None = None

    def get(self, row: int, col: int) -> np.ndarray:
        """The pixels of tile ``(row, col)`` (the part inside the image)."""
        y0, x0 = row * self.tile, col * self.tile
        y1, x1 = min(self.h, y0 + self.tile), min(self.w, x0 + self.tile)
        if not self.dense:
            return np.asarray(self.image[y0:y1, x0:x1])
        if self._strip is None or self._strip[0] != row:
            self._strip = (row, np.asarray(self.image[y0:y1]))
        return self._strip[1][:, x0:x1]


class TileSpill:
    """The tiles with pixels of one level, kept on disk until they are written (flat ones live in the grid).

    Tiles are added in any order (:meth:`put`) and read back by position (:meth:`get`).
    """

    def __init__(self, folder: Path, tile: int, dtype: np.dtype) -> None:
        self.tile, self.dtype = tile, np.dtype(dtype)
        handle, name = tempfile.mkstemp(prefix="level-", suffix=".tiles", dir=folder)
        self._fd, self._path = handle, Path(name)
        self._size = 0
        self._index: dict[tuple[int, int], tuple[int, tuple[int, ...]]] = {}

    @property
    def stored(self) -> int:
        """How many tiles are kept."""
        return len(self._index)

    def put(self, row: int, col: int, tile: np.ndarray) -> None:
        """Keep the pixels of tile ``(row, col)``."""
        data = np.ascontiguousarray(tile, dtype=self.dtype)
        os.pwrite(self._fd, data.tobytes(), self._size)
        self._index[(row, col)] = (self._size, tuple(data.shape))
        self._size += data.nbytes

    def get(self, row: int, col: int) -> np.ndarray:
        """The pixels of tile ``(row, col)`` (a read-only array)."""
        offset, shape = self._index[(row, col)]
        count = int(np.prod(shape)) * self.dtype.itemsize
        return np.frombuffer(os.pread(self._fd, count, offset), dtype=self.dtype).reshape(shape)

    def close(self) -> None:
        """Remove the scratch file (again: nothing)."""
        if self._fd < 0:
            return
        os.close(self._fd)
        self._fd = -1
        self._path.unlink(missing_ok=True)


def uniform_blocks(child: np.ndarray, pixel_ids: np.ndarray) -> np.ndarray:
    """``int32 (parent rows, parent columns)``: the pixel number shared by each 2x2 block of ``child``, else -1.

    ``child`` is a level grid (flat numbers or negative); a block (smaller at odd edges) is uniform when
    all its positions hold flat tiles of one pixel value.
    """
    pix = np.where(child >= 0, pixel_ids[np.maximum(child, 0)] if len(pixel_ids) else 0, -1)
    if pix.shape[0] % 2:
        pix = np.concatenate([pix, pix[-1:]], axis=0)
    if pix.shape[1] % 2:
        pix = np.concatenate([pix, pix[:, -1:]], axis=1)
    blocks = pix.reshape(pix.shape[0] // 2, 2, pix.shape[1] // 2, 2)
    low, high = blocks.min(axis=(1, 3)), blocks.max(axis=(1, 3))
    return np.where((low == high) & (low >= 0), low, -1).astype(np.int32)


class Halver:
    """Builds the next level from a level: its grid, and the pixels of the tiles that need them.

    The level's tiles with pixels are fed in row-major order (:meth:`add`); two rows of them are held
    at a time, and a parent with such a child is :func:`reduce2` of its 2x2 block. :meth:`finish`
    then settles every other parent from the grids alone: a block of flat tiles of one pixel value
    makes a flat parent of that value without pixel work (the arithmetic done once per value and
    shape), and only a block of flat tiles of different values is halved pixel by pixel.
    """

    def __init__(
        self,
        grid: np.ndarray,
        shape: tuple[int, ...],
        tile: int,
        mode: Downsample,
        table: FlatTable,
        out: TileSpill,
    ) -> None:
        self.child, self.shape, self.tile, self.mode, self.table, self.out = grid, shape, tile, mode, table, out
        self.parent_hw = ((shape[0] + 1) // 2, (shape[1] + 1) // 2)
        #: The next level's grid: flat numbers, :data:`STORED`, or :data:`UNREAD` while not settled.
        self.grid = np.full(tile_grid(self.parent_hw, tile), UNREAD, dtype=np.int32)
        self._pending: dict[tuple[int, int], np.ndarray] = {}
        self._parent_row = -1
        self._flat_parents: dict[tuple[int, int, int], int] = {}  # (pixel id, h, w) -> parent's flat number

    def add(self, row: int, col: int, tile: np.ndarray) -> None:
        """Feed the pixels of the level's tile ``(row, col)``, in row-major order, after its grid entry is final."""
        if row // 2 != self._parent_row:
            self._flush()
            self._parent_row = row // 2
        self._pending[(row, col)] = tile

    def finish(self) -> np.ndarray:
        """Settle every parent; return the next level's grid (flat numbers and :data:`STORED`)."""
        self._flush()
        pixel_ids = self.table.pixel_ids()
        uniform = uniform_blocks(self.child, pixel_ids)
        todo = self.grid == UNREAD
        for pixel in np.unique(uniform[todo & (uniform >= 0)]):
            for rsel, csel, shape in shape_classes(tile_grid(self.parent_hw, self.tile), self.parent_hw, self.tile):
                where = todo[rsel, csel] & (uniform[rsel, csel] == pixel)
                if where.any():
                    self.grid[rsel, csel][where] = self._flat_parent(int(pixel), shape)
        for prow, pcol in zip(*np.nonzero(todo & (uniform < 0)), strict=True):
            self._settle(int(prow), int(pcol))  # flat children of different values
        return self.grid

    def _flush(self) -> None:
        """Settle the parents of the held rows that have a child with pixels."""
        if not self._pending:
            return
        for prow, pcol in sorted({(r // 2, c // 2) for r, c in self._pending}):
            self._settle(prow, pcol)
        self._pending.clear()

    def _settle(self, prow: int, pcol: int) -> None:
        rows = []
        for r in range(2 * prow, min(2 * prow + 2, self.child.shape[0])):
            cols = range(2 * pcol, min(2 * pcol + 2, self.child.shape[1]))
            rows.append(np.concatenate([self._pixels(r, c) for c in cols], axis=1))
        parent = flat_or_array(reduce2(np.concatenate(rows, axis=0), self.mode))
        if isinstance(parent, Flat):
            self.grid[prow, pcol] = self.table.id(parent)
        else:
            self.out.put(prow, pcol, parent)
            self.grid[prow, pcol] = STORED

    def _pixels(self, row: int, col: int) -> np.ndarray:
        entry = int(self.child[row, col])
        if entry >= 0:
            return self.table.flats[entry].array()
        return np.asarray(self._pending[(row, col)])

    def _flat_parent(self, pixel: int, shape: tuple[int, int]) -> int:
        key = (pixel, *shape)
        if key not in self._flat_parents:  # the same per-pixel arithmetic, once per value and shape
            child = self.table.pixels[pixel]
            small = np.broadcast_to(child, (2, 2, *child.shape))
            value = reduce2(np.ascontiguousarray(small), self.mode)[0, 0]
            self._flat_parents[key] = self.table.id(Flat(np.array(value), (*shape, *self.shape[2:])))
        return self._flat_parents[key]


__all__ = [
    "STORED",
    "UNREAD",
    "Downsample",
    "Flat",
    "FlatTable",
    "Halver",
    "ImageTiles",
    "Tile",
    "TileSpill",
    "content_tiles",
    "fill_grid",
    "flat_or_array",
    "level0_grid",
    "reduce2",
    "shape_classes",
    "tile_grid",
    "uniform_blocks",
]
