"""Plain images (JPEG, PNG, single-level TIFF) as one-level slides; ``mrseg info`` / ``tissue`` without an mpp."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

from mrseg.cli import app
from mrseg.core.errors import MissingMppError, SlideError
from mrseg.wsi.backends import AUTO_ORDER, ImageBackend, backend_names
from mrseg.wsi.backends.image_backend import dpi_mpp
from mrseg.wsi.slide import Slide

runner = CliRunner()


def tissue_image() -> np.ndarray:
    """A 120 x 160 RGB image: white glass, a pink 'tissue' block (rows 30..89, cols 40..119), seeded texture."""
    image = np.full((120, 160, 3), 245, np.uint8)
    texture = np.random.default_rng(0).integers(0, 40, (60, 80, 1))
    image[30:90, 40:120] = (np.array([210, 120, 190]) - texture).astype(np.uint8)
    return image


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_plain_images_open_as_one_level_slides(tmp_path: Path, suffix: str) -> None:
    pixels = tissue_image()
    path = tmp_path / f"region{suffix}"
    Image.fromarray(pixels).save(path)
    assert "image" in backend_names() and AUTO_ORDER[-1] == "image"
    with pytest.raises(MissingMppError, match=rf"region\{suffix}.*--slide-mpp"):
        Slide.open(path)
    with Slide.open(path, mpp=0.5) as slide:
        assert slide.backend == "image" and slide.level_count == 1 and slide.dimensions == (160, 120)
        read = slide.read_box((0, 0, 160, 120), (160, 120))
        if suffix == ".jpg":
            assert np.abs(read.astype(int) - pixels).mean() < 6  # lossy
        else:
            np.testing.assert_array_equal(read, pixels)
        assert slide.read((80, 60), 1.0, 32).shape == (32, 32, 3)  # resampled by Slide
        assert slide.thumbnail(2.0).shape == (30, 40, 3)


def test_dpi_alpha_grey_and_refusals(tmp_path: Path) -> None:
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :6, 3] = 255  # right half transparent: white
    Image.fromarray(rgba).save(tmp_path / "a.png", dpi=(50800, 50800))  # 0.5 µm per pixel
    with Slide.open(tmp_path / "a.png") as slide:
        assert slide.mpp == pytest.approx(0.5)
        out = slide.read_box((0, 0, 12, 10), (12, 10))
        assert out[0, 0].tolist() == [200, 0, 0] and out[0, 11].tolist() == [255, 255, 255]
    Image.fromarray(np.full((8, 8), 90, np.uint8)).save(tmp_path / "g.png", dpi=(72, 72))
    with Slide.open(tmp_path / "g.png", require_mpp=False) as slide:  # 72 dpi is a screen density
        assert not slide.mpp_known and slide.read_box((0, 0, 8, 8), (8, 8))[0, 0].tolist() == [90, 90, 90]
    assert dpi_mpp((25400, 25400)) == (1.0, 1.0) and dpi_mpp(None) is None and dpi_mpp((0, 0)) is None
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(SlideError, match=r"notes\.png: not a readable slide.*image: "):
        Slide.open(tmp_path / "notes.png", mpp=1.0)
    tifffile.imwrite(tmp_path / "t.tif", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="tiffslide"):
        ImageBackend(tmp_path / "t.tif")


def test_single_level_tiff_is_a_one_level_slide(tmp_path: Path) -> None:
    pixels = tissue_image()
    tifffile.imwrite(tmp_path / "export.tif", pixels)  # no resolution tags, one page
    with pytest.raises(MissingMppError):
        Slide.open(tmp_path / "export.tif")
    with Slide.open(tmp_path / "export.tif", mpp=0.5) as slide:
        assert slide.level_count == 1 and slide.backend in ("openslide", "tiffslide")
        np.testing.assert_array_equal(slide.read_box((0, 0, 160, 120), (160, 120)), pixels)


def test_info_and_tissue_without_mpp(tmp_path: Path) -> None:
    path = tmp_path / "region.png"
    # Without mpp the tissue settings' sizes (20,000 µm² smallest object) are read as level-0 pixels: a big block.
    Image.fromarray(np.kron(tissue_image(), np.ones((4, 4, 1), np.uint8))).save(path)
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "640 x 480 px, mpp unknown (give it with --slide-mpp)" in result.stdout
    assert "backend   image (vendor png)" in result.stdout
    facts = json.loads(runner.invoke(app, ["info", str(path), "--json"]).stdout)
    assert facts["mpp"] is None and facts["levels"] == [{"size": [640, 480], "downsample": 1.0, "mpp": None}]
    result = runner.invoke(app, ["tissue", str(path), "--tissue-mpp", "2"])
    assert result.exit_code == 0, result.output
    assert "on a 320x240 mask, downsample 2; mpp unknown (give --slide-mpp)" in result.stdout
    facts = json.loads(runner.invoke(app, ["tissue", str(path), "--tissue-mpp", "2", "--json"]).stdout)
    assert facts["mpp"] is None and facts["tissue_area_mm2"] is None and facts["downsample"] == 2.0
    assert facts["fraction"] == pytest.approx(0.25, abs=0.05)
    known = json.loads(runner.invoke(app, ["tissue", str(path), "--slide-mpp", "1", "--json"]).stdout)
    assert known["mpp"] == 1.0 and known["tissue_area_mm2"] == pytest.approx(known["tissue_area_px2"] / 1e6)


@pytest.mark.realdata
def test_real_jpeg(shared_data: Path) -> None:
    path = shared_data / "images" / "histo.jpg"
    with Slide.open(path, mpp=0.5) as slide:
        assert slide.backend == "image" and slide.vendor == "jpeg" and slide.dimensions == (500, 300)
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 0 and "500 x 300 px, mpp unknown" in result.stdout
