"""The sparse chunk store of the merged maps: numpy slicing semantics, fill where nothing was written, cleanup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mrseg.inference.store import ChunkStore


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
