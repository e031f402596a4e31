"""The Deep Zoom (DZI) pyramid of a slide: levels, tiles and their level-0 boxes (pure geometry, no I/O).

Deep Zoom level ``L`` of ``L_max = ceil(log2(max(W0, H0)))`` is the slide scaled by
``2**(L - L_max)``: one level-``L`` pixel covers ``s = 2**(L_max - L)`` level-0 pixels, so the level
is ``ceil(W0 / s) x ceil(H0 / s)`` pixels (level ``L_max`` is level 0 itself, level 0 a single
pixel). Tile ``(col, row)`` of a level covers the level pixels ``[col * T - o, (col + 1) * T + o)``
(clipped to the level; ``T`` the tile size, ``o`` the overlap), i.e. the level-0 box of those
pixels times ``s``: slide tiles and overlay tiles of one ``(level, col, row)`` are read on exactly
this :class:`~mrseg.wsi.geometry.ReadGrid`, so every layer is aligned by construction. The last
column and row may extend past the slide by less than ``s`` level-0 pixels (white on slide tiles,
transparent on overlays), never rescaled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mrseg.wsi.geometry import ReadGrid, Size

#: Tile edge in pixels (OpenSeadragon's and OpenSlide's DeepZoom default).
TILE_PX = 254
#: Pixels shared by neighbouring tiles (so that browsers draw no seams between them).
OVERLAP_PX = 1


class TileNotFound(LookupError):
    """A ``(level, col, row)`` outside the pyramid."""


@dataclass(frozen=True)
class DeepZoomGrid:
    """The Deep Zoom pyramid of a ``dimensions_l0`` slide.

    Attributes
    ----------
    dimensions_l0
        Level-0 ``(width, height)`` in pixels.
    tile_px
        Tile edge ``T`` (without the overlap).
    overlap_px
        Overlap ``o`` on each inner side of a tile.
    """

    dimensions_l0: Size
    tile_px: int = TILE_PX
    overlap_px: int = OVERLAP_PX

    def __post_init__(self) -> None:
        w, h = self.dimensions_l0
        if w < 1 or h < 1 or self.tile_px < 1 or self.overlap_px < 0:
            raise ValueError(f"bad Deep Zoom grid {self.dimensions_l0}, tile {self.tile_px}, overlap {self.overlap_px}")

    @property
    def max_level(self) -> int:
        """``L_max``: the level that is the slide's level 0."""
        return max(0, math.ceil(math.log2(max(self.dimensions_l0))))

    @property
    def level_count(self) -> int:
        return self.max_level + 1

    def scale(self, level: int) -> int:
        """Level-0 pixels per pixel of ``level`` (``2**(L_max - level)``)."""
        self._check_level(level)
        return 2 ** (self.max_level - level)

    def level_size(self, level: int) -> Size:
        """``(width, height)`` of ``level`` in its pixels."""
        s = self.scale(level)
        w, h = self.dimensions_l0
        return (-(-w // s), -(-h // s))

    def tile_count(self, level: int) -> tuple[int, int]:
        """``(columns, rows)`` of tiles of ``level``."""
        w, h = self.level_size(level)
        return (-(-w // self.tile_px), -(-h // self.tile_px))

    def tile_region(self, level: int, col: int, row: int) -> tuple[int, int, int, int]:
        """The level pixels ``(x0, y0, x1, y1)`` (half-open) of tile ``(col, row)``, overlap included."""
        cols, rows = self.tile_count(level)
        if not (0 <= col < cols and 0 <= row < rows):
            raise TileNotFound(f"no tile ({col}, {row}) at level {level} ({cols} x {rows} tiles)")
        w, h = self.level_size(level)
        t, o = self.tile_px, self.overlap_px
        x0, y0 = max(0, col * t - o), max(0, row * t - o)
        return (x0, y0, min(w, (col + 1) * t + o), min(h, (row + 1) * t + o))

    def tile_grid(self, level: int, col: int, row: int) -> ReadGrid:
        """The read grid of tile ``(col, row)``: its level-0 box and its size in pixels."""
        x0, y0, x1, y1 = self.tile_region(level, col, row)
        s = self.scale(level)
        return ReadGrid((float(x0 * s), float(y0 * s), float(x1 * s), float(y1 * s)), (x1 - x0, y1 - y0))

    def dzi_xml(self, image_format: str) -> str:
        """The ``.dzi`` descriptor of this pyramid with tiles in ``image_format`` (``jpeg``, ``png``)."""
        w, h = self.dimensions_l0
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
            f'Format="{image_format}" Overlap="{self.overlap_px}" TileSize="{self.tile_px}">'
            f'<Size Width="{w}" Height="{h}"/></Image>\n'
        )

    def _check_level(self, level: int) -> None:
        if not 0 <= level <= self.max_level:
            raise TileNotFound(f"no level {level} (levels 0..{self.max_level})")


__all__ = ["OVERLAP_PX", "TILE_PX", "DeepZoomGrid", "TileNotFound"]
