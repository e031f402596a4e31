"""Outputs of predict: TIFF OpenSlide opens with the right mpp, overlay, GeoJSON, resumability, atomicity, CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from mrseg.cli import app
from mrseg.core.input_spec import InputSpec
from mrseg.inference import outputs
from mrseg.inference.cluster import predict_slides, run_slide
from mrseg.inference.predict import PredictSettings
from mrseg.models import create_model
from mrseg.models.checkpoint import make_checkpoint, save_checkpoint
from mrseg.wsi.tiff import write_pyramidal_tiff


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_slide(path: Path, *, mpp: float | None = 1.0, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    image = np.full((256, 320, 3), 255, np.uint8)
    t = rng.integers(0, 60, (150, 200, 1))
    image[50:200, 60:260] = np.concatenate([210 - t, 110 - t, 190 - t], axis=2).astype(np.uint8)
    if mpp is None:
        tifffile.imwrite(path, image, tile=(64, 64), photometric="rgb")
        return path
    return write_pyramidal_tiff(path, image, mpp, compression="zlib", min_size=64)


@pytest.fixture()
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = create_model("mrn_bilinear", mpps=[1.0, 2.0, 4.0], width=4, depth=2)
    return save_checkpoint(tmp_path / "model.pt", make_checkpoint(model, InputSpec((1.0, 2.0, 4.0), 32)))


def test_probability_tiff_opens_in_openslide_with_the_right_mpp(tmp_path: Path) -> None:
    values = np.tile(np.arange(256, dtype=np.uint8), (300, 3))[:, :700]
    path = outputs.write_probability_tiff(tmp_path / "p.tif", values, 0.5)
    with openslide.OpenSlide(str(path)) as slide:
        assert slide.dimensions == (700, 300)
        assert float(slide.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.5)
        assert slide.level_count >= 2
        region = np.asarray(slide.read_region((0, 0), 0, (256, 1)))[0, :, 0]
    np.testing.assert_array_equal(region, np.arange(256))
    half = outputs.write_probability_tiff(tmp_path / "h.tif", (values / 255).astype(np.float16), 0.5)
    np.testing.assert_allclose(tifffile.imread(half), values / 255, atol=1e-3)


def test_mask_polygons_keep_holes_in_level0_coordinates() -> None:
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    mask[18:22, 18:22] = False  # a hole
    mask[0:1, 0:1] = True  # too small
    polygons = outputs.mask_polygons(mask, pixel_l0=4.0)
    assert len(polygons) == 1
    poly = polygons[0]
    assert len(poly.interiors) == 1
    x0, y0, x1, y1 = poly.bounds
    assert (x0, y0, x1, y1) == pytest.approx((40, 40, 120, 120))  # traced along the pixel edges
    assert poly.area == pytest.approx((20 * 20 - 4 * 4) * 16, rel=0.1)
    collection = outputs.geojson_features(polygons)
    feature = collection["features"][0]
    assert collection["type"] == "FeatureCollection" and feature["geometry"]["type"] == "Polygon"
    assert feature["properties"]["classification"] == {"name": "Tumor", "color": [200, 0, 0]}
    assert len(feature["geometry"]["coordinates"]) == 2  # outer ring + hole


def test_overlay_png_has_the_thumbnail_size(tmp_path: Path) -> None:
    from PIL import Image

    thumb = np.full((50, 80, 3), 255, np.uint8)
    prob = np.zeros((100, 160), np.float32)
    prob[:, 80:] = 1.0
    path = outputs.write_overlay(tmp_path / "o.png", thumb, prob)
    image = np.asarray(Image.open(path))
    assert image.shape == (50, 80, 3)
    assert np.all(image[:, :30] == 255) and not np.all(image[:, 50:] == 255)


def test_run_slide_writes_all_outputs_and_a_json_record(tmp_path: Path, checkpoint: Path) -> None:
    slide = make_slide(tmp_path / "s.tif")
    result = run_slide(checkpoint, slide, tmp_path / "out", PredictSettings(geojson=True, threshold=0.01))
    assert result.status == "done" and result.tiles > 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["s.geojson", "s.json", "s.tif", "s_overlay.png"]
    record = json.loads((tmp_path / "out" / "s.json").read_text())
    assert record["map"]["mpp"] == 1.0 and record["slide"]["dimensions"] == [320, 256]
    assert record["checkpoint"]["sha256"] and record["timings"]["total_s"] > 0
    with openslide.OpenSlide(str(tmp_path / "out" / "s.tif")) as osl:
        assert osl.dimensions == (320, 256)
        assert float(osl.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(1.0)
    collection = json.loads((tmp_path / "out" / "s.geojson").read_text())
    assert collection["features"], "threshold 0.01 must outline the predicted tissue"
    minx = min(c[0] for f in collection["features"] for c in f["geometry"]["coordinates"][0])
    assert 20 <= minx <= 80  # the tissue starts at x = 60 level-0 px; tiles touching it extend up to 24 px left


def test_resumable_skip_overwrite_and_settings_change(tmp_path: Path, checkpoint: Path) -> None:
    slide = make_slide(tmp_path / "s.tif")
    out = tmp_path / "out"
    assert run_slide(checkpoint, slide, out).status == "done"
    stamp = (out / "s.tif").stat().st_mtime_ns
    assert run_slide(checkpoint, slide, out).status == "skipped"
    assert (out / "s.tif").stat().st_mtime_ns == stamp
    assert run_slide(checkpoint, slide, out, PredictSettings(batch_size=3)).status == "skipped"  # not output-defining
    assert run_slide(checkpoint, slide, out, overwrite=True).status == "done"
    assert run_slide(checkpoint, slide, out, PredictSettings(overlap=0.5)).status == "done"
    # another checkpoint (different weights, same architecture) redoes the slide
    torch.manual_seed(1)
    model = create_model("mrn_bilinear", mpps=[1.0, 2.0, 4.0], width=4, depth=2)
    other = save_checkpoint(tmp_path / "other.pt", make_checkpoint(model, InputSpec((1.0, 2.0, 4.0), 32)))
    assert run_slide(other, slide, out, PredictSettings(overlap=0.5)).status == "done"
    (out / "s_overlay.png").unlink()  # a missing output means not done
    assert run_slide(other, slide, out, PredictSettings(overlap=0.5)).status == "done"


def test_interrupted_slide_leaves_no_final_named_output(
    tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slide = make_slide(tmp_path / "s.tif")

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs, "overlay_from_map", crash)  # the TIFF is complete, the overlay is not
    with pytest.raises(KeyboardInterrupt):
        run_slide(checkpoint, slide, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # no final names, no temporary folder left


def test_cli_predict_reports_a_bad_slide_and_finishes_the_others(tmp_path: Path, checkpoint: Path) -> None:
    good = make_slide(tmp_path / "good.tif")
    bad = make_slide(tmp_path / "nompp.tif", mpp=None)
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(app, ["predict", str(checkpoint), str(bad), str(good), "--out", str(out)])
    assert result.exit_code == 1
    assert "1 of 2 slide(s) failed" in result.output and "nompp.tif" in result.output and "mpp" in result.output
    assert (out / "good.json").is_file() and not (out / "nompp.json").exists()
    again = runner.invoke(app, ["predict", str(checkpoint), str(good), "--out", str(out), "--mpp", "1.0"])
    assert again.exit_code == 0, again.output  # --mpp changes the settings: the slide is redone
    results = predict_slides(checkpoint, [good, bad], out, PredictSettings(mpp=1.0))
    assert [r.status for r in results] == ["skipped", "done"]
