"""Property and example tests of the pure geometry functions (mrseg.wsi.geometry)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mrseg.wsi import geometry as geo

finite = st.floats(min_value=-1e5, max_value=1e5, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=1e-3, max_value=64, allow_nan=False, allow_infinity=False)
sizes = st.integers(min_value=1, max_value=2048)


@given(cx=finite, cy=finite, w=sizes, h=sizes, ds=positive)
def test_centered_box_is_centred_and_sized(cx: float, cy: float, w: int, h: int, ds: float) -> None:
    x0, y0, x1, y1 = geo.centered_box((cx, cy), (w, h), ds)
    assert math.isclose((x0 + x1) / 2, cx, rel_tol=1e-9, abs_tol=1e-6)
    assert math.isclose((y0 + y1) / 2, cy, rel_tol=1e-9, abs_tol=1e-6)
    # widths are exact up to the float spacing of the coordinates
    assert math.isclose(x1 - x0, w * ds, rel_tol=1e-9, abs_tol=1e-9 * (abs(cx) + w * ds))
    assert math.isclose(y1 - y0, h * ds, rel_tol=1e-9, abs_tol=1e-9 * (abs(cy) + h * ds))


def test_centered_box_keeps_subpixel_centres() -> None:
    assert geo.centered_box((10.25, 3.5), 2, 1.0) == (9.25, 2.5, 11.25, 4.5)
    assert geo.centered_box((10.25, 3.5), (4, 2), 2.0) == (6.25, 1.5, 14.25, 5.5)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
def test_centered_box_rejects_bad_downsample(bad: float) -> None:
    with pytest.raises(ValueError, match="downsample"):
        geo.centered_box((0, 0), 4, bad)


@pytest.mark.parametrize("bad", [0, -3, (0, 4), (4,), (1, 2, 3)])
def test_as_size_rejects_bad_sizes(bad: object) -> None:
    with pytest.raises(ValueError, match="size_px"):
        geo.as_size(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [(0, 0, 0, 1), (0, 0, 1, 0), (2, 0, 1, 1), (0, 0, float("nan"), 1), (0, 1, 2)])
def test_check_box_rejects_bad_boxes(bad: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="box"):
        geo.check_box(bad)


level_mpps = st.lists(positive, min_size=1, max_size=8, unique=True).map(sorted)


@given(mpps=level_mpps, target=positive)
def test_choose_level_is_coarsest_fine_enough(mpps: list[float], target: float) -> None:
    level = geo.choose_level(mpps, target)
    limit = target * (1 + geo.LEVEL_TOLERANCE)
    if mpps[0] > limit:
        assert level == 0  # nothing fine enough: up-sample from level 0
    else:
        assert mpps[level] <= limit
        assert all(m > limit for m in mpps[level + 1 :])


def test_choose_level_tolerance_snaps() -> None:
    # 0.2475 (a 1 % finer scan) and 0.255 both serve a 0.25 request from level 0 without reading level 0 twice
    assert geo.choose_level([0.2475, 0.495, 0.99], 0.5) == 1
    assert geo.choose_level([0.255, 0.51, 1.02], 0.5) == 1
    assert geo.choose_level([0.26, 0.52], 0.5) == 0  # 4 % is too coarse
    with pytest.raises(ValueError):
        geo.choose_level([0.25], 0.0)


@given(w0=st.integers(256, 200_000), h0=st.integers(256, 200_000), k=st.integers(1, 6), up=st.booleans())
def test_snap_downsample_recovers_integer_factors(w0: int, h0: int, k: int, up: bool) -> None:
    d = 2**k
    wk = -(-w0 // d) if up else max(1, w0 // d)
    hk = -(-h0 // d) if up else max(1, h0 // d)
    reported = (w0 / wk + h0 / hk) / 2
    snapped = geo.snap_downsample((w0, h0), (wk, hk), reported)
    assert wk in (w0 // snapped, -(-w0 // snapped))
    assert hk in (h0 // snapped, -(-h0 // snapped))
    assert abs(snapped - reported) / reported < 0.5


def test_snap_downsample_keeps_non_integer_pyramids() -> None:
    assert geo.snap_downsample((1000, 1000), (300, 300), 3.3333) == 3.3333
    assert geo.snap_downsample((46000, 32914), (11500, 8228), 4.00012) == 4.0


@given(x0=finite, y0=finite, w=positive, h=positive, margin=st.integers(0, 3))
def test_covering_region_contains_box(x0: float, y0: float, w: float, h: float, margin: int) -> None:
    box = (x0, y0, x0 + w, y0 + h)
    ix0, iy0, ix1, iy1 = geo.covering_region(box, margin)
    assert ix0 <= box[0] - margin and iy0 <= box[1] - margin
    assert ix1 >= box[2] + margin and iy1 >= box[3] + margin
    assert ix1 - ix0 <= math.ceil(w) + 2 * margin + 1
    assert iy1 - iy0 <= math.ceil(h) + 2 * margin + 1


@given(ix=st.integers(-1000, 1000), iy=st.integers(-1000, 1000), w=sizes, h=sizes, shift=st.floats(0.01, 0.99))
def test_aligned_region_only_for_integer_unit_scale(ix: int, iy: int, w: int, h: int, shift: float) -> None:
    box = (float(ix), float(iy), float(ix + w), float(iy + h))
    assert geo.aligned_region(box, (w, h)) == (ix, iy, ix + w, iy + h)
    assert geo.aligned_region((ix + shift, iy, ix + w + shift, iy + h), (w, h)) is None
    assert geo.aligned_region(box, (w + 1, h)) is None


regions = st.tuples(st.integers(-50, 50), st.integers(-50, 50), st.integers(1, 40), st.integers(1, 40)).map(
    lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3])
)


@given(a=regions, b=regions)
def test_intersect_and_union(a: geo.Region, b: geo.Region) -> None:
    u = geo.union_region([a, b])
    assert u[0] <= min(a[0], b[0]) and u[2] >= max(a[2], b[2])
    both = geo.intersect(a, b)
    mask_a = np.zeros((200, 200), bool)
    mask_b = np.zeros((200, 200), bool)
    mask_a[a[1] + 100 : a[3] + 100, a[0] + 100 : a[2] + 100] = True
    mask_b[b[1] + 100 : b[3] + 100, b[0] + 100 : b[2] + 100] = True
    overlap = int((mask_a & mask_b).sum())
    assert (both is None and overlap == 0) or (both is not None and geo.region_area(both) == overlap)


@given(
    x0=st.floats(-40, 40), y0=st.floats(-40, 40), scale=st.floats(0.3, 7), w=st.integers(1, 30), h=st.integers(1, 30)
)
def test_sample_nearest_is_the_raster_pixel_under_each_target_centre(
    x0: float, y0: float, scale: float, w: int, h: int
) -> None:
    raster = np.arange(12 * 9 * 2, dtype=np.int32).reshape(12, 9, 2)  # trailing dimensions follow along
    raster_grid = geo.ReadGrid.of_map((12, 9), 3.0)
    target = geo.ReadGrid((x0, y0, x0 + w * scale, y0 + h * scale), (w, h))
    got = geo.sample_nearest(raster, raster_grid, target, fill=-1)
    xs, ys = target.centers()
    cols, rows = np.floor(xs / 3.0).astype(int), np.floor(ys / 3.0).astype(int)
    expected = np.full((h, w, 2), -1, np.int32)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            if 0 <= r < 12 and 0 <= c < 9:
                expected[i, j] = raster[r, c]
    np.testing.assert_array_equal(got, expected)
