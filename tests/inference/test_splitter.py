"""The tile grid: positions cover the slide, chunks partition the tiles, the tissue filter keeps tissue tiles."""

from __future__ import annotations

import numpy as np
import pytest

from mrseg.inference.splitter import grid_positions, make_tiling, tissue_filter
from mrseg.wsi.tissue import TissueMask


@pytest.mark.parametrize(("length", "tile", "stride", "expected"), [(100, 32, 24, 4), (32, 32, 24, 1), (10, 32, 24, 1)])
def test_grid_positions_cover_the_length(length: int, tile: int, stride: int, expected: int) -> None:
    starts = grid_positions(length, tile, stride)
    assert len(starts) == expected and starts[0] == 0
    assert starts[-1] + tile >= length and np.all(np.diff(starts) == stride)


def test_tiling_chunks_and_filter() -> None:
    tiling = make_tiling((300, 200), 0.5, 1.0, 32, 0.25, 2)  # map 150 x 100 px at 1 µm/px
    assert tiling.map_shape == (100, 150) and tiling.stride_px == 24 and tiling.pixel_l0 == 2.0
    assert tiling.n_tiles == 6 * 4
    chunks = tiling.chunks()
    assert sorted(np.concatenate(chunks).tolist()) == list(range(24))
    assert max(len(c) for c in chunks) == 4  # 2 x 2 tiles per chunk
    np.testing.assert_allclose(tiling.centers_l0(np.array([0]))[0], (32, 32))  # (0 + 16) map px x 2 level-0 px
    np.testing.assert_allclose(tiling.boxes_l0(np.array([1]))[0], (48, 0, 112, 64))
    kept = make_tiling((300, 200), 0.5, 1.0, 32, 0.25, 2, keep=lambda boxes: boxes[:, 0] < 100)
    assert kept.n_tiles == 3 * 4


def test_tissue_filter_keeps_tiles_touching_tissue() -> None:
    mask = np.zeros((20, 30), bool)
    mask[0:5, 0:5] = True  # tissue in the top-left 50 x 50 level-0 px (10 level-0 px per mask pixel)
    tissue = TissueMask(mask=mask, mpp=10.0, box_l0=(0.0, 0.0, 300.0, 200.0), source="test")
    every = make_tiling((300, 200), 1.0, 1.0, 32, 0.0, 4)
    tiling = make_tiling((300, 200), 1.0, 1.0, 32, 0.0, 4, keep=tissue_filter(tissue))
    kept = tiling.origins_map.tolist()
    assert kept[:4] == [[0, 0], [32, 0], [0, 32], [32, 32]]  # the tiles over the tissue, in grid order
    assert [288, 192] not in kept and tiling.n_tiles < every.n_tiles // 4


@pytest.mark.parametrize("slide_mpp", [0.243, 0.25, 0.5])
def test_tissue_filter_keeps_exactly_the_tiles_over_tissue_at_any_mpp(slide_mpp: float) -> None:
    """Tiles whose boxes cut mask pixels (CAMELYON16's 0.243 µm/px) keep no blank tile below or right of tissue.

    The summed-area table's interpolation leaves a rounding error (~1e-16 of the tissue count) on blank
    boxes; it must not read as tissue. Expected: the tiles whose box overlaps the tissue block with a
    positive area, from plain interval geometry.
    """
    mask = np.zeros((200, 200), bool)
    mask[90:110, 90:110] = True  # one block, mask pixels at 8 µm
    w0 = h0 = round(200 * 8.0 / slide_mpp)
    tissue = TissueMask(mask=mask, mpp=8.0, box_l0=(0.0, 0.0, float(w0), float(h0)), source="test")
    every = make_tiling((w0, h0), slide_mpp, 0.5, 256, 0.0, 8)
    boxes = every.boxes_l0()  # level-0 px
    scale = w0 / 200.0  # level-0 px per mask pixel
    x_hit = (boxes[:, 0] < 110 * scale) & (boxes[:, 2] > 90 * scale)
    y_hit = (boxes[:, 1] < 110 * scale) & (boxes[:, 3] > 90 * scale)
    expected = every.origins_map[x_hit & y_hit].tolist()
    kept = make_tiling((w0, h0), slide_mpp, 0.5, 256, 0.0, 8, keep=tissue_filter(tissue))
    assert kept.origins_map.tolist() == expected
    assert 4 <= len(expected) <= 100 < every.n_tiles
