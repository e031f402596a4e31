"""Pyramid tiles (mrseg.wsi.pyramid_tiles, mrseg.wsi.tile_sharing): sparse levels, flat blocks, work per blank tile."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from mrseg.wsi import pyramid_tiles, tile_sharing
from mrseg.wsi.pyramid_tiles import Downsample, FlatTable, reduce2, uniform_blocks
from mrseg.wsi.tiff import write_pyramidal_tiff


class BlockSparse:
    """A ``(H, W)`` uint8 array-like that says, per ``block``-px square, where it holds only ``fill_value``."""

    def __init__(self, data: np.ndarray, filled: np.ndarray, block: int, fill_value: int = 0) -> None:
        self.data, self.filled, self.block, self.fill_value = data, filled, block, fill_value
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, 2
        self.reads = 0

    def region_is_fill(self, y0: int, y1: int, x0: int, x1: int) -> bool:
        b = self.block
        return bool(self.filled[y0 // b : -(-y1 // b), x0 // b : -(-x1 // b)].all())

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        rows, cols = key
        assert not self.region_is_fill(rows.start, rows.stop, cols.start, cols.stop), "read a fill region"
        self.reads += 1
        return self.data[key]


def _block_map(height: int, width: int, *, fill: int = 0) -> BlockSparse:
    """Blank except a textured 100 x 150 px block at (40, 60), a 64 x 64 tile of 9s and one of the fill value.

    The marked-not-fill tiles that hold one value turn out flat only when read.
    """
    rng = np.random.default_rng(3)
    data = np.full((height, width), fill, np.uint8)
    data[40:140, 60:210] = rng.integers(0, 256, (100, 150), dtype=np.uint8)
    data[192:256, 0:64] = 9
    filled = np.ones((-(-height // 32), -(-width // 32)), bool)
    filled[1:5, 1:7] = False  # the textured block
    filled[6:8, 0:2] = False  # the 9s
    filled[6:8, 4:6] = False  # fill-valued, but not said to be
    return BlockSparse(data, filled, 32, fill)


@pytest.mark.parametrize(
    ("shape", "mode", "fill"), [((300, 420), "mean", 0), ((333, 257), "nearest", 0), ((300, 420), "max", 5)]
)
def test_sparse_levels_equal_halving_the_whole_level(
    tmp_path: Path, shape: tuple[int, int], mode: Downsample, fill: int
) -> None:
    image = _block_map(*shape, fill=fill)
    path = write_pyramidal_tiff(
        tmp_path / "m.tif", image, 2.0, compression="zlib", tile=32, downsample=mode, min_size=32
    )
    level = image.data
    with tifffile.TiffFile(path) as tif:
        for page in tif.pages:
            np.testing.assert_array_equal(page.asarray(), level)  # type: ignore[union-attr]
            assert all(page.dataoffsets) and all(page.databytecounts)  # type: ignore[union-attr]  # no empty tile
            level = reduce2(level, mode)
        offsets = [o for p in tif.pages for o in p.dataoffsets]  # type: ignore[union-attr]
    assert len(set(offsets)) < len(offsets) / 2  # flat tiles shared, across pages too


def test_uniform_blocks_of_a_grid() -> None:
    table = FlatTable()
    zero = table.id(pyramid_tiles.Flat(np.array(0, np.uint8), (32, 32)))
    zero_edge = table.id(pyramid_tiles.Flat(np.array(0, np.uint8), (32, 8)))  # same value, another shape
    nine = table.id(pyramid_tiles.Flat(np.array(9, np.uint8), (32, 32)))
    stored = pyramid_tiles.STORED
    grid = np.array(
        [
            [zero, zero, nine, nine, zero_edge],
            [zero, zero, nine, zero, zero_edge],
            [stored, zero, nine, nine, zero_edge],
        ],
        dtype=np.int32,
    )
    assert table.pixel_ids().tolist() == [0, 0, 1]
    expected = [[0, -1, 0], [-1, 1, 0]]  # odd edges: the block has only the children that exist
    assert uniform_blocks(grid, table.pixel_ids()).tolist() == expected


def _counting(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, counts: dict[str, int]) -> None:
    real = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        counts[name] = counts.get(name, 0) + 1
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)


def test_blank_area_costs_no_work_of_mrseg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same tissue in a map of 16x the area: tiles handled and halved grow only with the pages, not the area."""
    work: dict[str, dict[str, int]] = {}
    pages: dict[str, int] = {}
    for name, size in (("small", 1024), ("large", 4096)):
        counts: dict[str, int] = {}
        with monkeypatch.context() as patch:
            _counting(patch, tile_sharing.FlatSharing, "_tile", counts)
            _counting(patch, pyramid_tiles.Halver, "_settle", counts)
            _counting(patch, pyramid_tiles, "reduce2", counts)
            image = _block_map(size, size)
            path = write_pyramidal_tiff(tmp_path / f"{name}.tif", image, 2.0, compression="zlib", tile=32, min_size=32)  # type: ignore[arg-type]
        counts["reads"] = image.reads
        work[name] = counts
        with tifffile.TiffFile(path) as tif:
            pages[name] = len(tif.pages)
            region = tif.pages[0].asarray()[:300, :300]  # type: ignore[union-attr]
            positions = sum(len(p.dataoffsets) for p in tif.pages)  # type: ignore[union-attr]
        np.testing.assert_array_equal(region, image.data[:300, :300])
        if name == "large":
            assert positions > 20_000
    extra_pages = pages["large"] - pages["small"]
    assert work["large"]["reads"] == work["small"]["reads"] == 24 + 4 + 4  # the tiles not said to be fill
    for key in ("_tile", "_settle", "reduce2"):
        assert work["small"][key] <= work["large"][key] <= work["small"][key] + 3 * extra_pages, key


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_scratch_files_are_closed(tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    write_pyramidal_tiff(tmp_path / "m.tif", _block_map(700, 900), 2.0, compression="zlib", tile=32, min_size=32)  # type: ignore[arg-type]
    assert len(os.listdir("/proc/self/fd")) == before
