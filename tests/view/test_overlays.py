"""Overlays are aligned to the slide exactly, whatever the map's mpp: maps whose values encode their
pixel are rendered on Deep Zoom tiles and compared with the map pixel that contains each tile pixel's
centre, computed here independently. Plus the colormap, threshold and near-zero transparency."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mrseg.core.encoding import FLOAT16, UINT8
from mrseg.view.catalog import build_catalog
from mrseg.view.maps import MapRaster
from mrseg.view.render import NEAR_ZERO, blank_png, overlay_png, rgba_table
from mrseg.view.service import Viewer
from view_scenes import SLIDE_H, SLIDE_MPP, SLIDE_W, map_values, write_prediction, write_slide


def expected_values(values: np.ndarray, pixel_l0: float, box: tuple[float, ...], size: tuple[int, int]) -> np.ndarray:
    """The value of the map pixel containing each output pixel's centre (0 outside the map)."""
    x0, y0, x1, y1 = box
    w, h = size
    out = np.zeros((h, w), values.dtype)
    for v in range(h):
        for u in range(w):
            cx, cy = x0 + (u + 0.5) * (x1 - x0) / w, y0 + (v + 0.5) * (y1 - y0) / h
            col, row = math.floor(cx / pixel_l0), math.floor(cy / pixel_l0)
            if 0 <= row < values.shape[0] and 0 <= col < values.shape[1]:
                out[v, u] = values[row, col]
    return out


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


@pytest.mark.parametrize("map_mpp", [0.5, 1.5, 2.0, 4.0, 0.7])
def test_overlay_tiles_show_the_map_pixel_under_each_tile_pixel(tmp_path: Path, map_mpp: float) -> None:
    slide = write_slide(tmp_path / "s.tif")
    d = map_mpp / SLIDE_MPP
    values = map_values((round(SLIDE_H / d), round(SLIDE_W / d)))
    write_prediction(tmp_path / "p", slide, values, map_mpp)
    viewer = Viewer(build_catalog(slide, {"m": tmp_path / "p"}))
    grid = viewer.catalog.slides["s"].grid
    table = rgba_table("magma", 0.0)
    try:
        for level, col, row in [(grid.max_level, 0, 0), (grid.max_level, 3, 2), (grid.max_level, 1, 1)]:
            tile = grid.tile_grid(level, col, row)
            png = viewer.overlay_tile("s", "m", "map", level, col, row, "magma", 0.0)
            expected = table[expected_values(values, d, tile.box_l0, tile.size_px)]
            np.testing.assert_array_equal(decode(png), expected)
    finally:
        viewer.close()


def test_zoomed_out_tiles_use_the_coarser_map_levels(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "s.tif")
    values = map_values((600, 1000))  # map at the slide's mpp: levels 1000 .. 16 px wide
    write_prediction(tmp_path / "p", slide, values, SLIDE_MPP)
    raster = MapRaster(tmp_path / "p" / "s.tif", 1.0)
    try:
        assert [level.grid.scale[0] for level in raster.levels] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
        assert raster.level_for(4.0).grid.scale[0] == 4.0 and raster.level_for(3.9).grid.scale[0] == 2.0
        tile = Viewer._tile_grid(build_catalog(slide).slides["s"], 8, 0, 0)  # 4 level-0 px per tile pixel
        level = raster.level_for(4.0)
        expected = expected_values(np.asarray(level.array), 4.0, tile.box_l0, tile.size_px)
        np.testing.assert_array_equal(raster.values(tile), expected)
    finally:
        raster.close()


def test_threshold_and_near_zero_are_transparent() -> None:
    values = np.array([[0, 3, 5, 6, 127, 128, 255]], np.uint8)
    assert 5 / 255 < NEAR_ZERO <= 6 / 255
    rgba = decode(overlay_png(values, UINT8, "viridis", 0.0))
    assert rgba[0, :, 3].tolist() == [0, 0, 0, 255, 255, 255, 255]  # near zero: transparent at threshold 0
    rgba = decode(overlay_png(values, UINT8, "viridis", 0.5))
    assert rgba[0, :, 3].tolist() == [0, 0, 0, 0, 0, 255, 255]  # 127/255 < 0.5 <= 128/255
    assert rgba[0, 6, :3].tolist() == rgba_table("viridis", 0)[255, :3].tolist()  # colour = cmap(p), not rescaled


def test_float16_maps_are_coloured_like_their_uint8_encoding() -> None:
    p = np.array([[0.0, 0.25, 0.5, 1.0]], np.float16)
    assert overlay_png(p, FLOAT16, "magma", 0.1) == overlay_png(UINT8.encode(p.astype(np.float32)), UINT8, "magma", 0.1)


def test_a_tile_with_nothing_to_show_is_the_shared_blank_png() -> None:
    png = overlay_png(np.zeros((255, 254), np.uint8), UINT8, "viridis", 0.5)
    assert png is blank_png(254, 255)
    assert not decode(png)[..., 3].any()
