"""TIFF files (mrseg.wsi.tiff): the pyramid plan, levels and pages, resolution tags read back, integrity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from mrseg.core.errors import SlideError
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
    image = np.zeros((128, 128, 3), np.uint8)
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
