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
