"""TIFF files (mrseg.wsi.tiff): the pyramid plan, levels and pages, resolution tags read back, integrity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from mrseg.core.errors import SlideError
from mrseg.wsi.pyramid_tiles import reduce2
from mrseg.wsi.slide import Slide
from mrseg.wsi.tiff import (
    check_tiff_integrity,
    is_tiff,
    plan_pyramid,
    pyramid_shapes,
    resolution_mpp,
    write_pyramidal_tiff,
)


def test_pyramid_shapes() -> None:
    assert pyramid_shapes(1000, 600) == [(1000, 600), (500, 300), (250, 150)]
    assert pyramid_shapes(100, 80) == [(100, 80)]
    with pytest.raises(ValueError, match="positive"):
        pyramid_shapes(0, 10)


def test_plan_pyramid() -> None:
    rgb = plan_pyramid((600, 500, 3), np.dtype(np.uint8), 0.5, quality=80)
    assert rgb.shapes == ((600, 500), (300, 250), (150, 125)) and rgb.channels == 3 and not rgb.grey
    assert rgb.page["compression"] == "jpeg" and rgb.page["compressionargs"] == {"level": 80}
    assert rgb.page["photometric"] == "rgb" and rgb.px_per_cm == pytest.approx(2e4)
    assert rgb.level_shape(1) == (300, 250, 3)
    labels = plan_pyramid((600, 500), np.dtype(np.uint8), 0.5)  # labels are never lossy
    assert labels.page["compression"] == "zlib" and labels.page["photometric"] == "minisblack"
    assert labels.level_shape(0) == (600, 500)
    rgba = plan_pyramid((64, 64, 4), np.dtype(np.uint8), 0.5)
    assert rgba.page["compression"] == "zlib" and rgba.page["extrasamples"] == ("unassalpha",)


@pytest.mark.parametrize(
    ("shape", "mpp", "tile", "message"),
    [
        ((64, 64, 3), 0.0, 256, "mpp must be a positive number"),
        ((64, 64, 3), float("nan"), 256, "mpp must be a positive number"),
        ((64, 64, 3), 0.5, 100, "multiple of 16"),
        ((64,), 0.5, 256, r"\(H, W\) or \(H, W, C\)"),
    ],
)
def test_plan_pyramid_refuses(shape: tuple[int, ...], mpp: float, tile: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_pyramid(shape, np.dtype(np.uint8), mpp, tile=tile)


def test_levels_pages_and_resolution(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    path = write_pyramidal_tiff(tmp_path / "p.tif", image, 0.25, compression="zlib", tile=64, min_size=64)
    with tifffile.TiffFile(path) as tif:
        assert [p.shape for p in tif.pages] == [(300, 200, 3), (150, 100, 3), (75, 50, 3), (38, 25, 3)]
        np.testing.assert_array_equal(tif.pages[0].asarray(), image)
        for k, page in enumerate(tif.pages):
            num, den = page.tags["XResolution"].value
            assert num / den == pytest.approx(1e4 / 0.25 / 2**k)
    assert resolution_mpp(path) == pytest.approx((0.25, 0.25))
    assert is_tiff(path) and not list(tmp_path.glob("*.tmp*"))


def test_single_channel_image_is_written_as_grey(tmp_path: Path) -> None:
    labels = np.random.default_rng(1).integers(0, 4, (300, 260, 1), dtype=np.uint8)
    squeezed = write_pyramidal_tiff(tmp_path / "a.tif", labels, 0.5, downsample="nearest", min_size=64)
    grey = write_pyramidal_tiff(tmp_path / "b.tif", labels[..., 0], 0.5, downsample="nearest", min_size=64)
    assert squeezed.read_bytes() == grey.read_bytes()
    np.testing.assert_array_equal(tifffile.imread(squeezed), labels[..., 0])


def test_integrity_check(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)  # not flat: real tile data
    path = write_pyramidal_tiff(tmp_path / "ok.tif", image, 0.5, compression="zlib", tile=32, min_size=32)
    check_tiff_integrity(path)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SlideError, match=r"cut\.tif: truncated or corrupt TIFF"):
        check_tiff_integrity(cut)
    other = tmp_path / "other.svs"
    other.write_bytes(b"not a tiff at all")
    check_tiff_integrity(other)  # not a TIFF: left to the backends
    assert not is_tiff(other)


@pytest.mark.parametrize("check", ["integrity", "resolution", "slide"])
def test_reading_tags_leaves_no_tiff_file_for_the_collector(tmp_path: Path, check: str) -> None:
    """A closed TiffFile is a reference cycle holding every tile offset as a Python int: it is freed on return."""
    import gc

    image = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    path = write_pyramidal_tiff(tmp_path / "p.tif", image, 0.5, compression="zlib", tile=32, min_size=32)
    gc.collect()
    gc.disable()  # no automatic collection may hide a cycle left behind
    try:
        if check == "integrity":
            check_tiff_integrity(path)
        elif check == "resolution":
            assert resolution_mpp(path) == pytest.approx((0.5, 0.5))
        else:
            Slide.open(path).close()
        alive = [o for o in gc.get_objects() if isinstance(o, (tifffile.TiffFile, tifffile.TiffPage))]
    finally:
        gc.enable()
    assert alive == []


def test_tiff_cycles_are_freed_even_when_collections_run_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Allocations while the file is open (another thread's, in a slide's loaders) must not age its cycles."""
    import gc
    import threading

    image = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    path = write_pyramidal_tiff(tmp_path / "p.tif", image, 0.5, compression="zlib", tile=32, min_size=32)
    close = tifffile.TiffFile.close

    def churning_close(self: tifffile.TiffFile) -> None:
        _ = [[] for _ in range(50_000)]  # enough tracked objects for automatic collections of every generation
        close(self)

    monkeypatch.setattr(tifffile.TiffFile, "close", churning_close)
    gc.collect()
    assert gc.isenabled()
    check_tiff_integrity(path)
    assert gc.isenabled()
    gc.disable()
    try:
        alive = [o for o in gc.get_objects() if isinstance(o, (tifffile.TiffFile, tifffile.TiffPage))]
    finally:
        gc.enable()
    assert alive == []
    # concurrent callers: automatic collections end as they were, on
    threads = [threading.Thread(target=lambda: [check_tiff_integrity(path) for _ in range(5)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert gc.isenabled()


# --------------------------------------------------------------------------------------------
# Tile by tile: levels equal to halving the whole level, flat tiles shared, sparse images not read
# --------------------------------------------------------------------------------------------
def _patchy(shape: tuple[int, ...], dtype: type, seed: int = 0) -> np.ndarray:
    """Mostly a constant background with a few textured blocks: flat tiles and tiles with content."""
    rng = np.random.default_rng(seed)
    image = np.zeros(shape, dtype)
    image[...] = 255 if len(shape) == 3 else 0
    for y, x in ((10, 20), (150, 90), (260, 300)):
        block = image[y : y + 70, x : x + 50]
        block[...] = rng.integers(0, 250, block.shape).astype(dtype) if dtype != np.float16 else rng.random(block.shape)
    return image


def _reference_levels(image: np.ndarray, mode: str, count: int) -> list[np.ndarray]:
    levels = [image]
    for _ in range(count - 1):
        levels.append(reduce2(levels[-1], mode))  # type: ignore[arg-type]
    return levels


@pytest.mark.parametrize(
    ("shape", "dtype", "mode"),
    [
        ((333, 411, 3), np.uint8, "mean"),
        ((333, 411), np.uint8, "nearest"),
        ((333, 411), np.uint8, "max"),
        ((301, 290), np.float16, "mean"),
    ],
)
def test_levels_equal_halving_the_whole_level(tmp_path: Path, shape: tuple[int, ...], dtype: type, mode: str) -> None:
    image = _patchy(shape, dtype)
    path = write_pyramidal_tiff(
        tmp_path / "p.tif", image, 0.5, compression="zlib", tile=32, downsample=mode, min_size=32
    )  # type: ignore[arg-type]
    with tifffile.TiffFile(path) as tif:
        expected = _reference_levels(image, mode, len(tif.pages))
        assert len(tif.pages) == len(pyramid_shapes(*shape[:2], min_size=32))
        for page, level in zip(tif.pages, expected, strict=True):
            np.testing.assert_array_equal(page.asarray(), level)


@pytest.mark.parametrize("compression", ["zlib", "jpeg"])
def test_flat_tiles_are_encoded_once_and_shared(tmp_path: Path, compression: str) -> None:
    image = _patchy((333, 411, 3), np.uint8)
    path = write_pyramidal_tiff(tmp_path / "p.tif", image, 0.5, compression=compression, tile=32, min_size=32)
    with tifffile.TiffFile(path) as tif:
        offsets = [o for p in tif.pages for o in p.dataoffsets]  # type: ignore[union-attr]
        white = tif.pages[0].dataoffsets[5]  # type: ignore[union-attr]  # tile (0, 5): background
        assert len(set(offsets)) < len(offsets) / 3 and offsets.count(white) > 40
        decoded = [page.asarray() for page in tif.pages]
    if compression == "zlib":
        np.testing.assert_array_equal(decoded[0], image)
    for backend in ("openslide", "tiffslide"):
        with Slide.open(path, backend=backend) as slide:
            assert slide.level_dimensions == tuple((w, h) for h, w in pyramid_shapes(333, 411, min_size=32))
            assert slide.mpp == pytest.approx(0.5) and slide.level_mpps[1] == pytest.approx(1.0)
            for level, expected in enumerate(decoded):
                h, w = expected.shape[:2]
                region = slide.read_level_region(level, (0, 0, w, h)).astype(int)
                assert np.abs(region - expected).max() <= (0 if compression == "zlib" else 2)


class SparseImage:
    """A (H, W) uint8 array-like that says where it holds only zeros, and fails if read there."""

    fill_value = 0

    def __init__(self, data: np.ndarray, filled: np.ndarray) -> None:
        self.data, self.filled = data, filled  # filled: bool per 32-px block
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, 2

    def region_is_fill(self, y0: int, y1: int, x0: int, x1: int) -> bool:
        return bool(self.filled[y0 // 32 : -(-y1 // 32), x0 // 32 : -(-x1 // 32)].all())

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        rows, cols = key
        assert not self.region_is_fill(rows.start, rows.stop, cols.start, cols.stop), "read a fill region"
        return self.data[key]


def test_sparse_images_are_read_only_where_they_hold_something(tmp_path: Path) -> None:
    data = np.zeros((200, 300), np.uint8)
    data[40:90, 100:170] = np.random.default_rng(2).integers(1, 255, (50, 70), dtype=np.uint8)
    filled = np.ones((7, 10), bool)
    filled[1:3, 3:6] = False
    path = write_pyramidal_tiff(
        tmp_path / "m.tif", SparseImage(data, filled), 2.0, compression="zlib", tile=32, min_size=32
    )
    np.testing.assert_array_equal(tifffile.imread(path), data)
    with tifffile.TiffFile(path) as tif:
        np.testing.assert_array_equal(tif.pages[1].asarray(), reduce2(data, "mean"))


def test_mostly_blank_levels_are_encoded_on_one_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The thread count follows the share of tiles with pixels; the file is the same byte for byte either way."""
    import mrseg.wsi.tiff as tiff_module
    from mrseg.wsi.pyramid_tiles import content_tiles

    data = np.zeros((640, 640), np.uint8)
    data[40:90, 100:170] = np.random.default_rng(2).integers(1, 255, (50, 70), dtype=np.uint8)
    filled = np.ones((20, 20), bool)
    filled[1:3, 3:6] = False
    image = SparseImage(data, filled)
    assert content_tiles(image, 32) == 2 * 3 and content_tiles(data, 32) == 400
    monkeypatch.setattr(tiff_module, "ENCODE_THREADS", 3)
    assert tiff_module.encode_threads(6, 400) == 1 and tiff_module.encode_threads(50, 400) == 3
    used: list[int] = []
    real = tiff_module.write_level

    def spy(*args: object, **kwargs: object) -> None:
        used.append(int(args[5]))  # type: ignore[call-overload]
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tiff_module, "write_level", spy)
    sparse = write_pyramidal_tiff(tmp_path / "a.tif", image, 2.0, compression="zlib", tile=32, min_size=32)
    assert used[:2] == [1, 1]  # 6 of 400 and 2-4 of 100 tiles hold pixels
    used.clear()
    monkeypatch.setattr(tiff_module, "THREADED_MIN_SHARE", 0.0)
    threaded = write_pyramidal_tiff(tmp_path / "b.tif", image, 2.0, compression="zlib", tile=32, min_size=32)
    assert set(used) == {3}
    assert sparse.read_bytes() == threaded.read_bytes()
    np.testing.assert_array_equal(tifffile.imread(sparse), data)
