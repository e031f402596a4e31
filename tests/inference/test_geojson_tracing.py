"""GeoJSON tracing is pixel-exact: every region, hole and island in a hole survives (issue 12, item 11)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from mrseg.inference.writers.geojson import mask_polygons


def rasterize(polygons: list[shapely.Polygon], shape: tuple[int, int], pixel_l0: float = 1.0) -> np.ndarray:
    """Which mask pixels have their centre inside one of ``polygons`` (level-0 coordinates)."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    out = np.zeros(shape, dtype=bool)
    for polygon in polygons:
        out |= shapely.contains_xy(polygon, (xx + 0.5) * pixel_l0, (yy + 0.5) * pixel_l0)
    return out


def diagonal_squares() -> np.ndarray:
    mask = np.zeros((16, 16), dtype=bool)
    mask[2:8, 2:8] = True
    mask[8:14, 8:14] = True  # touches the first square at one corner only
    return mask


def island_in_a_hole() -> np.ndarray:
    mask = np.zeros((24, 24), dtype=bool)
    mask[2:22, 2:22] = True  # a region
    mask[6:18, 6:18] = False  # its hole
    mask[10:14, 10:14] = True  # an island in the hole
    return mask


def checkerboard() -> np.ndarray:
    return (np.indices((12, 12)).sum(axis=0) % 2).astype(bool)


def ragged() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((64, 64)) < 0.45


@pytest.mark.parametrize("make", [diagonal_squares, island_in_a_hole, checkerboard, ragged])
@pytest.mark.parametrize("pixel_l0", [1.0, 4.0])
def test_rasterising_the_polygons_gives_the_mask_back(make: object, pixel_l0: float) -> None:
    mask = make()  # type: ignore[operator]
    polygons = mask_polygons(mask, pixel_l0, min_area_px=0)
    assert all(p.is_valid for p in polygons)
    np.testing.assert_array_equal(rasterize(polygons, mask.shape, pixel_l0), mask)
    assert sum(p.area for p in polygons) == pytest.approx(mask.sum() * pixel_l0**2)


def test_two_squares_touching_at_a_corner_keep_their_area() -> None:
    polygons = mask_polygons(diagonal_squares(), 1.0)
    assert len(polygons) == 2 and sum(p.area for p in polygons) == 72  # was one polygon of 35.5


def test_island_in_a_hole_is_its_own_polygon() -> None:
    polygons = sorted(mask_polygons(island_in_a_hole(), 1.0), key=lambda p: p.area)
    assert [p.area for p in polygons] == [16, 400 - 144]
    assert len(polygons[1].interiors) == 1 and polygons[1].interiors[0].convex_hull.area == 144
    assert polygons[1].interiors[0].convex_hull.contains(polygons[0])


def test_small_regions_are_dropped_by_8_connected_area() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[1, 1] = mask[2, 2] = True  # one 8-connected region of 2 pixels
    mask[5:8, 5:8] = True
    assert [p.area for p in mask_polygons(mask, 1.0, min_area_px=3)] == [9]
    assert len(mask_polygons(mask, 1.0, min_area_px=2)) == 3  # kept: the diagonal pair is 2 polygons
