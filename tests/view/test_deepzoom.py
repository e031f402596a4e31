"""The Deep Zoom pyramid: level sizes, tile regions with overlap, their level-0 read grids, the DZI XML."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from mrseg.view.deepzoom import DeepZoomGrid, TileNotFound


@pytest.mark.parametrize(("dims", "levels"), [((1, 1), 1), ((2, 1), 2), ((1000, 600), 11), ((1024, 1024), 11)])
def test_levels_halve_up_to_the_slide(dims: tuple[int, int], levels: int) -> None:
    grid = DeepZoomGrid(dims)
    assert grid.level_count == levels
    assert grid.level_size(grid.max_level) == dims and grid.level_size(0) == (1, 1)
    for level in range(grid.level_count):
        s = 2 ** (grid.max_level - level)
        assert grid.level_size(level) == (math.ceil(dims[0] / s), math.ceil(dims[1] / s))


def test_tiles_overlap_inside_and_are_clipped_at_the_edges() -> None:
    grid = DeepZoomGrid((1000, 600), tile_px=254, overlap_px=1)
    assert grid.tile_count(10) == (4, 3)
    assert grid.tile_region(10, 0, 0) == (0, 0, 255, 255)
    assert grid.tile_region(10, 1, 1) == (253, 253, 509, 509)
    assert grid.tile_region(10, 3, 2) == (761, 507, 1000, 600)
    with pytest.raises(TileNotFound):
        grid.tile_region(10, 4, 0)
    with pytest.raises(TileNotFound):
        grid.tile_region(11, 0, 0)


def test_tile_grids_are_level_pixels_times_the_scale() -> None:
    grid = DeepZoomGrid((1000, 600))
    g = grid.tile_grid(9, 1, 0)  # level 9: 500 x 300 px, 2 level-0 px per pixel
    assert g.box_l0 == (506.0, 0.0, 1000.0, 510.0) and g.size_px == (247, 255)
    assert g.scale == (2.0, 2.0)
    g = grid.tile_grid(8, 0, 0)  # 250 x 150 px of 4 level-0 px: the last pixel reaches past the slide
    assert g.box_l0 == (0.0, 0.0, 1000.0, 600.0) and g.size_px == (250, 150)
    g = grid.tile_grid(7, 0, 0)  # 125 x 75 px of 8: 1000 x 600 exactly
    assert g.size_px == (125, 75) and g.box_l0 == (0.0, 0.0, 1000.0, 600.0)
    g = grid.tile_grid(6, 0, 0)  # 63 x 38 px of 16 level-0 px: 1008 x 608, a partial last pixel
    assert g.size_px == (63, 38) and g.box_l0 == (0.0, 0.0, 1008.0, 608.0)


def test_dzi_xml() -> None:
    root = ET.fromstring(DeepZoomGrid((1000, 600)).dzi_xml("png"))
    ns = "{http://schemas.microsoft.com/deepzoom/2008}"
    assert root.tag == f"{ns}Image"
    assert root.attrib == {"Format": "png", "Overlap": "1", "TileSize": "254"}
    assert root.find(f"{ns}Size").attrib == {"Width": "1000", "Height": "600"}  # type: ignore[union-attr]
