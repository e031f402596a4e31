"""The sparse chunk store of the merged maps: numpy slicing semantics, fill where nothing was written, cleanup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mrseg.inference.store import ChunkStore
from mrseg.wsi.pyramid_tiles import fill_grid, tile_grid


@pytest.fixture()
def store_and_array(tmp_path: Path) -> tuple[ChunkStore, np.ndarray]:
    rng = np.random.default_rng(0)
    store = ChunkStore(tmp_path / "s.chunks", (50, 70), 16, np.uint8)
    array = np.zeros((50, 70), np.uint8)
    for cy, cx in ((0, 0), (1, 2), (3, 4), (2, 1)):
        y0, y1, x0, x1 = store.extent(cy, cx)
        data = rng.integers(1, 255, (y1 - y0, x1 - x0), dtype=np.uint8)
        store.write_chunk(cy, cx, data)
        array[y0:y1, x0:x1] = data
    return store, array


@pytest.mark.parametrize(
    "key",
    [
        np.s_[:],
        np.s_[:, :],
        np.s_[5],
        np.s_[-1],
        np.s_[10:40, 20:69],
        np.s_[3:45:4, ::7],
        np.s_[49:60],
        np.s_[:, 65],
        np.s_[20:20],
    ],
)
def test_slices_like_numpy(store_and_array: tuple[ChunkStore, np.ndarray], key: object) -> None:
    store, array = store_and_array
    np.testing.assert_array_equal(store[key], array[key])  # type: ignore[index]


def test_fill_regions_rewrites_and_errors(tmp_path: Path, store_and_array: tuple[ChunkStore, np.ndarray]) -> None:
    store, array = store_and_array
    assert store.chunks_written == 4 and store.grid == (4, 5)
    assert store.region_is_fill(16, 32, 0, 16) and not store.region_is_fill(16, 33, 0, 17)
    assert store.region_is_fill(48, 50, 0, 70) is False  # chunk (3, 4) holds data
    store.write_chunk(0, 0, np.full((16, 16), 7, np.uint8))
    assert store.chunks_written == 4 and (store[:16, :16] == 7).all()
    np.testing.assert_array_equal(np.asarray(store)[16:], array[16:])
    with pytest.raises(ValueError, match="chunk \\(3, 4\\) is \\(2, 6\\) pixels"):
        store.write_chunk(3, 4, np.zeros((16, 16), np.uint8))
    with pytest.raises(IndexError):
        store[50]
    fill = ChunkStore(tmp_path / "f.chunks", (10, 10), 4, np.float16, fill_value=0.5)
    assert fill[:].dtype == np.float16 and (fill[:] == 0.5).all() and fill.read_chunk(0, 0) is None
    store.close()
    assert not store.path.exists()


@pytest.mark.parametrize("strip_pixels", [1, 70 * 3, 1 << 24])
def test_sample_nearest_skips_fill_strips_with_the_same_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strip_pixels: int
) -> None:
    # a sparse map whose fill value is not the sampler's outside fill: skipped strips must read as
    # the map's fill, target pixels outside the map as the sampler's, whatever the strip height
    from mrseg.wsi import geometry as geo

    monkeypatch.setattr(geo, "SAMPLE_STRIP_PIXELS", strip_pixels)
    rng = np.random.default_rng(1)
    store = ChunkStore(tmp_path / "f.chunks", (50, 70), 8, np.uint8, fill_value=7)
    for cy, cx in ((1, 1), (4, 6), (6, 8)):
        y0, y1, x0, x1 = store.extent(cy, cx)
        store.write_chunk(cy, cx, rng.integers(10, 255, (y1 - y0, x1 - x0), dtype=np.uint8))
    dense = store[:, :]
    map_grid = geo.ReadGrid.of_map((50, 70), 4.0)
    for box, size in (((0, 0, 280, 200), (70, 50)), ((-40, -30, 300, 230), (33, 21)), ((10, 5, 290, 150), (140, 90))):
        target = geo.ReadGrid(box, size)
        expected = geo.sample_nearest(dense, map_grid, target, fill=255)
        np.testing.assert_array_equal(geo.sample_nearest(store, map_grid, target, fill=255), expected)


class _Counted:
    """A map whose ``region_is_fill`` questions are counted."""

    def __init__(self, store: ChunkStore) -> None:
        self.store, self.calls = store, 0
        self.shape = store.shape

    def region_is_fill(self, y0: int, y1: int, x0: int, x1: int) -> bool:
        self.calls += 1
        return self.store.region_is_fill(y0, y1, x0, x1)


@pytest.mark.parametrize(
    ("shape", "chunk", "tile"), [((50, 70), 8, 16), ((50, 70), 16, 8), ((97, 130), 24, 16), ((9, 700), 4, 32)]
)
def test_fill_grid_is_each_tiles_own_answer(tmp_path: Path, shape: tuple[int, int], chunk: int, tile: int) -> None:
    # the pyramid writer's blank-tile grid, asked from the whole map down, against asking every tile
    rng = np.random.default_rng(shape[0] + chunk + tile)
    rows, cols = tile_grid(shape, tile)
    for written in (0, 1, 3, 20):
        store = ChunkStore(tmp_path / f"g{written}.chunks", shape, chunk, np.uint8)
        for _ in range(written):
            cy, cx = int(rng.integers(0, store.grid[0])), int(rng.integers(0, store.grid[1]))
            y0, y1, x0, x1 = store.extent(cy, cx)
            store.write_chunk(cy, cx, np.ones((y1 - y0, x1 - x0), np.uint8))
        expected = [
            [
                store.region_is_fill(r * tile, min(shape[0], r * tile + tile), c * tile, min(shape[1], c * tile + tile))
                for c in range(cols)
            ]
            for r in range(rows)
        ]
        np.testing.assert_array_equal(fill_grid(store, tile), np.array(expected))
    assert fill_grid(np.zeros((5, 5)), 2) is None


def test_fill_grid_of_a_mostly_blank_map_asks_few_questions(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "big.chunks", (4000, 8000), 64, np.uint8)
    blank = _Counted(store)
    assert fill_grid(blank, 16).all() and blank.calls == 1  # 125,000 positions, one question
    store.write_chunk(20, 70, np.ones((64, 64), np.uint8))
    one = _Counted(store)
    grid = fill_grid(one, 16)
    assert grid is not None and int((~grid).sum()) == 16  # the chunk's 4 x 4 tiles
    assert one.calls < 200
