"""The tiles of an image pyramid, level by level, each level made from the tiles of the one before.

The pyramidal TIFF writer (:mod:`mrseg.wsi.tiff`) streams a level's tiles in row-major order
(:func:`level0_tiles` for level 0) into the file and, at the same time, into a :class:`Halver`
that builds the next level's tiles from each 2x2 block of them and keeps them in a
:class:`TileSpill` (a scratch file, read back with ``pread``: nothing is memory mapped, so the
resident memory stays that of a couple of tile rows whatever the image size).

A tile whose pixels are all equal is a :class:`Flat` tile: it is never read, encoded or halved
pixel by pixel. An image that says which regions hold only its fill value
(``region_is_fill(y0, y1, x0, x1)``, as the probability maps of :mod:`mrseg.inference.store` do)
is not even read there, so the work is proportional to the tiles that hold anything. The
halving of a block is exactly :func:`reduce2` of the level's pixels, so every level is the same
as halving the whole level at once.
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


def level0_tiles(image: Any, tile: int, fills: np.ndarray | None = None) -> Iterator[Tile]:
    """Yield the tiles of ``image`` (``(H, W[, C])`` array-like) in row-major order, flat ones as :class:`Flat`.

    An image with ``region_is_fill(y0, y1, x0, x1)`` and ``fill_value`` is read only where that
    says a tile holds something (``fills``: its :func:`fill_grid`, computed here when not given);
    any other array-like is read in strips of ``tile`` rows.
    """
    h, w = (int(s) for s in image.shape[:2])
    if fills is None:
        fills = fill_grid(image, tile)
    trailing = tuple(int(s) for s in image.shape[2:])
    blank: dict[tuple[int, ...], Flat] = {}  # one fill tile per shape (edge tiles are smaller)
    for row, y0 in enumerate(range(0, h, tile)):
        y1 = min(h, y0 + tile)
        strip = None if fills is not None else np.asarray(image[y0:y1])
        for col, x0 in enumerate(range(0, w, tile)):
            x1 = min(w, x0 + tile)
            if fills is not None and fills[row, col]:
                shape = (y1 - y0, x1 - x0, *trailing)
                if shape not in blank:
                    blank[shape] = Flat(np.full(trailing, image.fill_value, dtype=image.dtype), shape)
                yield blank[shape]
                continue
            part = np.asarray(image[y0:y1, x0:x1]) if strip is None else strip[:, x0:x1]
            yield flat_or_array(part)


class TileSpill:
    """The tiles of one level kept on disk (flat ones only in the index) until they are written.

    Tiles are added in any order and read back with :meth:`tiles` in row-major order.
    """

    def __init__(self, folder: Path, shape: tuple[int, ...], tile: int, dtype: np.dtype) -> None:
        self.shape, self.tile, self.dtype = shape, tile, np.dtype(dtype)
        self.grid = tile_grid((shape[0], shape[1]), tile)
        handle, name = tempfile.mkstemp(prefix="level-", suffix=".tiles", dir=folder)
        self._fd, self._path = handle, Path(name)
        self._size = 0
        self._index: dict[tuple[int, int], Flat | tuple[int, tuple[int, ...]]] = {}
        #: Tiles kept with their pixels (not flat).
        self.stored = 0

    def put(self, row: int, col: int, tile: Tile) -> None:
        """Keep tile ``(row, col)``."""
        if isinstance(tile, Flat):
            self._index[(row, col)] = tile
            return
        data = np.ascontiguousarray(tile, dtype=self.dtype)
        os.pwrite(self._fd, data.tobytes(), self._size)
        self._index[(row, col)] = (self._size, tuple(data.shape))
        self._size += data.nbytes
        self.stored += 1

    def get(self, row: int, col: int) -> Tile:
        """Tile ``(row, col)`` (a :class:`Flat` tile or a read-only array)."""
        entry = self._index[(row, col)]
        if isinstance(entry, Flat):
            return entry
        offset, shape = entry
        count = int(np.prod(shape)) * self.dtype.itemsize
        return np.frombuffer(os.pread(self._fd, count, offset), dtype=self.dtype).reshape(shape)

    def tiles(self) -> Iterator[Tile]:
        """Every tile in row-major order."""
        rows, cols = self.grid
        for row in range(rows):
            for col in range(cols):
                yield self.get(row, col)

    def close(self) -> None:
        """Remove the scratch file."""
        os.close(self._fd)
        self._path.unlink(missing_ok=True)


class Halver:
    """Builds the next level's tiles from a level's tiles fed in row-major order (:meth:`add`) into a spill.

    Two rows of the level's tiles are held at a time; a parent tile is :func:`reduce2` of its 2x2
    block of children, or flat without any pixel work when its children are all flat alike.
    """

    def __init__(self, shape: tuple[int, ...], tile: int, mode: Downsample, out: TileSpill) -> None:
        self.shape, self.tile, self.mode, self.out = shape, tile, mode, out
        self.rows, self.cols = tile_grid((shape[0], shape[1]), tile)
        self._pair: list[list[Tile]] = []
        self._count = 0
        self._flat_parents: dict[tuple[bytes, tuple[int, ...]], Flat] = {}  # flat block -> its flat parent
        # a 2x2 block of one and the same Flat object (blank background: level0_tiles and this class
        # hand out one object per content and shape) -> (that object, kept alive so that its id is
        # not reused, and its parent), found by identity
        self._same_parent: dict[int, tuple[Flat, Tile]] = {}

    def add(self, tile: Tile) -> None:
        """Feed the next tile of the level (row-major)."""
        if self._count % self.cols == 0:
            self._pair.append([])
        self._pair[-1].append(tile)
        self._count += 1
        if self._count % self.cols == 0 and (len(self._pair) == 2 or self._count == self.rows * self.cols):
            self._emit_row()

    def _emit_row(self) -> None:
        parent_row = (self._count // self.cols - 1) // 2
        for col in range(0, self.cols, 2):
            block = [row[col : col + 2] for row in self._pair]
            self.out.put(parent_row, col // 2, self._parent(block))
        self._pair = []

    def _parent(self, block: list[list[Tile]]) -> Tile:
        first = block[0][0]
        if (
            isinstance(first, Flat)
            and len(block) == 2
            and all(len(row) == 2 and row[0] is row[1] is first for row in block)
        ):
            if id(first) not in self._same_parent:
                self._same_parent[id(first)] = (first, self._any_parent(block))
            return self._same_parent[id(first)][1]
        return self._any_parent(block)

    def _any_parent(self, block: list[list[Tile]]) -> Tile:
        tiles = [t for row in block for t in row]
        if all(isinstance(t, Flat) for t in tiles) and len({t.key[0] for t in tiles}) == 1:
            heights = sum(row[0].shape[0] for row in block)
            widths = sum(t.shape[1] for t in block[0])
            key = (tiles[0].key[0], (heights, widths, *tiles[0].shape[2:]))
            if key not in self._flat_parents:  # the same per-pixel arithmetic, once per content and size
                small = np.broadcast_to(tiles[0].pixel, (2, 2, *tiles[0].pixel.shape))
                pixel = reduce2(np.ascontiguousarray(small), self.mode)[0, 0]
                shape = ((heights + 1) // 2, (widths + 1) // 2, *tiles[0].shape[2:])
                self._flat_parents[key] = Flat(np.array(pixel), shape)
            return self._flat_parents[key]
        rows = [np.concatenate([_pixels(t) for t in row], axis=1) for row in block]
        return flat_or_array(reduce2(np.concatenate(rows, axis=0), self.mode))


def _pixels(tile: Tile) -> np.ndarray:
    return tile.array() if isinstance(tile, Flat) else np.asarray(tile)


__all__ = [
    "Downsample",
    "Flat",
    "Halver",
    "Tile",
    "TileSpill",
    "content_tiles",
    "fill_grid",
    "flat_or_array",
    "level0_tiles",
    "reduce2",
    "tile_grid",
]
