"""Concentric multi-resolution patches: spec validation, one-centre reads, grid reads with shared level reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mrseg.core.errors import ConfigError
from mrseg.core.input_spec import InputSpec
from mrseg.wsi.concentric import (
    chunk_points,
    concentric_boxes,
    iter_concentric_grid,
    read_concentric,
    read_concentric_grid,
)
from mrseg.wsi.slide import Slide
from mrseg.wsi.tiff import write_pyramidal_tiff
from slide_images import coord_image, reduce2

MPP = 0.5
SPEC = InputSpec(mpps=(0.5, 1.0, 2.0, 4.0), size_px=16)


@pytest.fixture()
def even_path(tmp_path: Path) -> Path:
    return write_pyramidal_tiff(tmp_path / "even.tif", coord_image(512, 384), MPP, compression="zlib", tile=64)


@pytest.fixture()
def odd_path(tmp_path: Path) -> Path:
    return write_pyramidal_tiff(tmp_path / "odd.tif", coord_image(509, 381), MPP, compression="zlib", tile=64)


# ----------------------------------------------------------------------------------------------
# spec
# ----------------------------------------------------------------------------------------------


def test_spec_normalises() -> None:
    spec = InputSpec(mpps=[0.5, 1, 2, 4], size_px=np.int64(512))  # type: ignore[arg-type]
    assert spec.mpps == (0.5, 1.0, 2.0, 4.0)
    assert spec.size_px == 512 and type(spec.size_px) is int
    assert spec.num_resolutions == 4
    assert spec.field_of_view_um() == (256.0, 512.0, 1024.0, 2048.0)
    assert concentric_boxes(spec, 0.25, (1000, 1000))[1] == (-24.0, -24.0, 2024.0, 2024.0)  # 512 px * 1 mpp / 0.25


@pytest.mark.parametrize(
    ("mpps", "size", "match"),
    [
        ((), 16, "empty"),
        ((0.5, -1.0), 16, "positive"),
        ((0.0, 1.0), 16, "positive"),
        ((0.5, float("nan")), 16, "positive"),
        ((1.0, 0.5), 16, "ascending"),
        ((0.5, 0.5), 16, "ascending"),
        (("a",), 16, "numbers"),
        ((0.5,), 0, "size"),
        ((0.5,), -4, "size"),
        ((0.5,), 2.5, "size"),
        ((0.5,), True, "size"),
    ],
)
def test_spec_validation(mpps: tuple[object, ...], size: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        InputSpec(mpps=mpps, size_px=size)  # type: ignore[arg-type]


def test_spec_allows_non_octave_ratios() -> None:
    assert InputSpec(mpps=(0.5, 0.75, 3.0), size_px=8).num_resolutions == 3


# ----------------------------------------------------------------------------------------------
# one centre
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["openslide", "tiffslide"])
def test_read_concentric_patches_are_concentric(even_path: Path, backend: str) -> None:
    # centre on a multiple of 64 so every patch is an exact copy of its level (2x2 mean pyramid):
    # the central half of patch j+1 is then exactly the 2x2 mean of patch j
    with Slide.open(even_path, backend=backend) as slide:
        center = (256.0, 192.0)
        patches = read_concentric(slide, center, SPEC)
        assert patches.shape == (4, 16, 16, 3) and patches.dtype == np.uint8
        for j, mpp in enumerate(SPEC.mpps):
            np.testing.assert_array_equal(patches[j], slide.read(center, mpp, 16))
    np.testing.assert_array_equal(patches[0], coord_image(512, 384)[184:200, 248:264])
    for j in range(3):
        np.testing.assert_array_equal(reduce2(patches[j]), patches[j + 1][4:12, 4:12])


def test_concentric_field_of_view_in_microns(even_path: Path) -> None:
    with Slide.open(even_path, mpp=0.25) as slide:  # same file, claimed twice as fine
        boxes = concentric_boxes(SPEC, slide.mpp, (100.0, 100.0))
        assert [b[2] - b[0] for b in boxes] == [32.0, 64.0, 128.0, 256.0]  # 16 px * mpp / 0.25 level-0 px
        assert read_concentric(slide, (100.0, 100.0), SPEC).shape == (4, 16, 16, 3)


# ----------------------------------------------------------------------------------------------
# grid
# ----------------------------------------------------------------------------------------------


def _random_centers(n: int, width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.uniform((-40, -40), (width + 40, height + 40), size=(n, 2))
    centers[: n // 4] = np.round(centers[: n // 4])  # some integer centres (exact copies)
    return centers


@pytest.mark.parametrize(
    ("backend", "fixture"), [("openslide", "even_path"), ("tiffslide", "even_path"), ("tiffslide", "odd_path")]
)
@pytest.mark.parametrize("chunk_px", [24, 64, 4096])
def test_grid_equals_per_centre(backend: str, fixture: str, chunk_px: int, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(fixture)
    spec = InputSpec(mpps=(0.5, 0.8, 2.0, 4.0), size_px=15)  # odd size, a non-matching mpp
    with Slide.open(path, backend=backend) as slide:
        centers = _random_centers(40, *slide.dimensions, seed=chunk_px)
        grid = read_concentric_grid(slide, centers, spec, chunk_px=chunk_px)
        naive = np.stack([read_concentric(slide, c, spec) for c in centers])
    assert grid.shape == (40, 4, 15, 15, 3)
    np.testing.assert_array_equal(grid, naive)


def test_grid_reads_each_level_once_per_chunk(even_path: Path) -> None:
    with Slide.open(even_path) as slide:
        xs, ys = np.meshgrid(np.arange(64, 448, 16.0), np.arange(64, 320, 16.0))
        centers = np.stack([xs.ravel(), ys.ravel()], axis=1)
        read_concentric_grid(slide, centers, SPEC, chunk_px=4096)  # one chunk
        assert slide.reads == SPEC.num_resolutions
        grid_pixels = slide.pixels_read
        slide.reset_counters()
        for c in centers:
            read_concentric(slide, c, SPEC)
        assert slide.reads == len(centers) * SPEC.num_resolutions
        assert slide.pixels_read > 10 * grid_pixels


def test_iter_grid_yields_every_centre_once(even_path: Path) -> None:
    with Slide.open(even_path) as slide:
        centers = _random_centers(30, *slide.dimensions, seed=1)
        seen = np.concatenate([idx for idx, patches in iter_concentric_grid(slide, centers, SPEC, chunk_px=32)])
        assert sorted(seen.tolist()) == list(range(30))


def test_grid_edge_cases(even_path: Path) -> None:
    with Slide.open(even_path) as slide:
        assert read_concentric_grid(slide, np.zeros((0, 2)), SPEC).shape == (0, 4, 16, 16, 3)
        assert read_concentric_grid(slide, [], SPEC).shape == (0, 4, 16, 16, 3)
        outside = read_concentric_grid(slide, [(-5000.0, -5000.0)], SPEC)
        assert (outside == 255).all()
        with pytest.raises(ValueError, match=r"\(n, 2\)"):
            read_concentric_grid(slide, np.zeros((3, 3)), SPEC)
        with pytest.raises(ValueError, match="finite"):
            read_concentric_grid(slide, [(np.nan, 1.0)], SPEC)
        with pytest.raises(ValueError, match="chunk_px"):
            read_concentric_grid(slide, [(1.0, 1.0)], SPEC, chunk_px=0)


# --- chunks of centres ----------------------------------------------------------------------

finite = st.floats(min_value=-1e5, max_value=1e5, allow_nan=False, allow_infinity=False)


@settings(max_examples=50)
@given(
    points=st.lists(st.tuples(finite, finite), min_size=0, max_size=60),
    cell=st.floats(1.0, 5000.0),
)
def test_chunk_points_partitions(points: list[tuple[float, float]], cell: float) -> None:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    groups = chunk_points(pts, cell)
    flat = np.concatenate(groups) if groups else np.zeros(0, np.int64)
    assert sorted(flat.tolist()) == list(range(len(pts)))
    for group in groups:
        cells = np.floor(pts[group] / cell)
        assert (cells == cells[0]).all()
        assert (np.diff(group) > 0).all()


def test_chunk_points_rejects_bad_cell() -> None:
    with pytest.raises(ValueError):
        chunk_points(np.zeros((2, 2)), 0)
