"""Evaluation against ground truth: sklearn-equal AUC, Dice on hand-made masks, slide-set checks, reports, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from mrseg.cli import app
from mrseg.core.errors import ConfigError, DataError
from mrseg.core.input_spec import InputSpec
from mrseg.evaluation.evaluate import evaluate
from mrseg.evaluation.metrics import mask_scores
from mrseg.evaluation.settings import EvaluateSettings
from mrseg.evaluation.truth import find_truth
from mrseg.inference.cluster import predict_slides
from mrseg.inference.runner import run_slide
from mrseg.inference.settings import PredictSettings
from mrseg.inference.writers.tiff import write_probability_tiff
from mrseg.models import create_model
from mrseg.models.checkpoint import make_checkpoint, save_checkpoint
from mrseg.synth import generate
from mrseg.wsi.tiff import write_pyramidal_tiff

DIMS = (400, 300)  # level-0 (width, height) at 0.5 µm/px
SLIDE_MPP = 0.5
EVAL_MPP = 2.0  # evaluation grid 100 x 75
RECT_L0 = (100, 80, 260, 200)  # the tumour, level-0 pixels


def truth_grid() -> np.ndarray:
    mask = np.zeros((75, 100), bool)
    mask[20:50, 25:65] = True  # pixel centres (u + 0.5) * 4 inside [100, 260) x [80, 200)
    return mask


def write_truth(folder: Path, stems: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    x0, y0, x1, y1 = RECT_L0
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    feature = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"classification": {"name": "Tumor"}},
    }
    for stem in stems:
        (folder / f"{stem}.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    return folder


def write_slide(path: Path) -> Path:
    rng = np.random.default_rng(0)
    image = np.full((DIMS[1], DIMS[0], 3), 255, np.uint8)
    t = rng.integers(0, 60, (240, 300, 1))
    image[30:270, 50:350] = np.concatenate([210 - t, 110 - t, 190 - t], axis=2).astype(np.uint8)
    return write_pyramidal_tiff(path, image, SLIDE_MPP, compression="zlib", min_size=64)


def write_prediction(folder: Path, stem: str, values: np.ndarray, slide: Path, map_mpp: float = EVAL_MPP) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_probability_tiff(folder / f"{stem}.tif", values, map_mpp)
    record = {
        "slide": {"path": str(slide), "dimensions": list(DIMS), "mpp": SLIDE_MPP},
        "map": {"mpp": map_mpp},
        "outputs": {"map": f"{stem}.tif", "record": f"{stem}.json"},
    }
    (folder / f"{stem}.json").write_text(json.dumps(record))


def noisy_prediction(seed: int, strength: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    prob = np.clip(0.5 * truth_grid() * strength + rng.random((75, 100)) * (1 - 0.5 * strength), 0, 1)
    return np.rint(prob * 255).astype(np.uint8)


def test_auc_equals_sklearn_on_the_same_pixels(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "s1.tif")
    values = noisy_prediction(0, 0.6)
    write_prediction(tmp_path / "pred", "s1", values, slide)
    result = evaluate(
        {"m": tmp_path / "pred"}, write_truth(tmp_path / "truth", ["s1"]), tmp_path / "rep", mpp=2.0, within="slide"
    )
    truth = truth_grid()
    pooled = result["models"]["m"]["pooled"]
    assert pooled["n_positive"] == truth.sum() and pooled["n_negative"] == (~truth).sum()
    assert abs(pooled["auc"] - roc_auc_score(truth.ravel(), values.ravel() / 255)) < 1e-3
    expected = mask_scores(values >= 128, truth)  # 0.5 threshold on uint8 x 255: values >= 127.5
    for key in ("dice", "iou", "precision", "recall", "accuracy"):
        assert pooled["at"]["0.5"][key] == pytest.approx(expected[key])
    assert pooled["best_dice"]["dice"] >= pooled["at"]["0.5"]["dice"]


def test_perfect_prediction_and_coarser_grid(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "s1.tif")
    fine = np.kron(truth_grid(), np.ones((4, 4), bool)).astype(np.uint8) * 255  # map at 0.5 µm/px
    write_prediction(tmp_path / "pred", "s1", fine, slide, map_mpp=0.5)
    result = evaluate({"m": tmp_path / "pred"}, write_truth(tmp_path / "t", ["s1"]), tmp_path / "r", within="slide")
    pooled = result["models"]["m"]["pooled"]
    assert pooled["auc"] == pytest.approx(1.0)
    assert pooled["at"]["0.5"]["dice"] == pytest.approx(1.0) and pooled["at"]["0.5"]["iou"] == pytest.approx(1.0)


def test_within_tissue_counts_fewer_pixels(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "s1.tif")
    write_prediction(tmp_path / "pred", "s1", noisy_prediction(1, 0.5), slide)
    truth = write_truth(tmp_path / "t", ["s1"])
    everywhere = evaluate({"m": tmp_path / "pred"}, truth, tmp_path / "r1", within="slide")["models"]["m"]["pooled"]
    tissue = evaluate({"m": tmp_path / "pred"}, truth, tmp_path / "r2", within="tissue")["models"]["m"]["pooled"]
    assert tissue["n_positive"] == everywhere["n_positive"]  # the tumour lies inside the tissue
    assert 0 < tissue["n_negative"] < everywhere["n_negative"]


def test_two_models_write_json_csv_roc_and_panel(tmp_path: Path) -> None:
    slides = {stem: write_slide(tmp_path / f"{stem}.tif") for stem in ("a", "b")}
    for i, (stem, slide) in enumerate(slides.items()):
        write_prediction(tmp_path / "good", stem, noisy_prediction(i, 0.9), slide)
        write_prediction(tmp_path / "weak", stem, noisy_prediction(10 + i, 0.2), slide)
    truth = write_truth(tmp_path / "t", list(slides))
    result = evaluate(
        {"good": tmp_path / "good", "weak": tmp_path / "weak"}, truth, tmp_path / "rep", within="slide", panels=["b"]
    )
    assert result["models"]["good"]["pooled"]["auc"] > result["models"]["weak"]["pooled"]["auc"] > 0.5
    assert set(result["models"]["good"]["per_slide"]) == {"a", "b"}
    files = sorted(p.name for p in (tmp_path / "rep").iterdir())
    assert files == ["metrics.csv", "metrics.json", "panel_b.png", "roc.png"]
    rows = list(csv.DictReader((tmp_path / "rep" / "metrics.csv").open()))
    assert len(rows) == 2 * 3 * 2  # models x (pooled + 2 slides) x (0.5, best Dice)
    assert {r["threshold_kind"] for r in rows} == {"fixed", "best_dice"}


def test_partial_slide_sets_evaluate_the_rest_and_name_the_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    slide = write_slide(tmp_path / "a.tif")
    for stem in ("a", "c"):
        write_prediction(tmp_path / "m1", stem, noisy_prediction(0, 0.5), slide)
    write_prediction(tmp_path / "m1", "extra", noisy_prediction(0, 0.5), slide)
    write_prediction(tmp_path / "m2", "a", noisy_prediction(1, 0.5), slide)
    truth = write_truth(tmp_path / "t", ["a", "b", "c"])
    preds = {"m1": tmp_path / "m1", "m2": tmp_path / "m2"}
    with caplog.at_level("WARNING"):
        result = evaluate(preds, truth, tmp_path / "r", within="slide")
    assert result["slides"] == ["a"]  # the slides every model predicted
    assert result["missing"] == {
        "truth": ["extra"],
        "assumed_normal": [],
        "predictions": {"m1": ["b"], "m2": ["b", "c"]},
    }
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["missing"] == result["missing"]
    assert "without ground truth are not evaluated: extra" in caplog.text
    assert "model 'm2' lacks predictions for 2 slide(s), not evaluated: b, c" in caplog.text
    subset = evaluate(preds, truth, tmp_path / "r2", within="slide", slides=["a", "b"])
    assert subset["slides"] == ["a"] and subset["missing"]["predictions"] == {"m1": ["b"], "m2": ["b"]}
    normal = evaluate({"m1": tmp_path / "m1"}, truth, tmp_path / "r3", within="slide", missing_truth="normal")
    assert normal["slides"] == ["a", "c", "extra"] and normal["missing"]["assumed_normal"] == ["extra"]
    assert normal["models"]["m1"]["per_slide"]["extra"]["n_positive"] == 0
    with pytest.raises(DataError, match=r"no slide has both ground truth and a prediction.*lacks predictions.*: b"):
        evaluate(preds, truth, tmp_path / "r4", within="slide", slides=["b"])
    with pytest.raises(DataError, match="no finished predictions"):
        evaluate({"m": tmp_path / "t"}, truth, tmp_path / "r")


def test_bad_settings_and_unknown_panel(tmp_path: Path) -> None:
    for changes, message in [
        ({"within": "everywhere"}, "within must be 'tissue' or 'slide'"),
        ({"mpp": 0.0}, "mpp must be a positive number"),
        ({"bins": 1}, "bins must be an integer >= 2"),
    ]:
        with pytest.raises(ConfigError, match=message):
            EvaluateSettings(**changes)  # type: ignore[arg-type]
    assert EvaluateSettings(panels=["a"]).panels == ("a",)
    slide = write_slide(tmp_path / "a.tif")
    write_prediction(tmp_path / "pred", "a", noisy_prediction(0, 0.5), slide)
    truth = write_truth(tmp_path / "t", ["a"])
    with pytest.raises(DataError, match=r"--panel: unknown slide\(s\) zz; known: a"):
        evaluate({"m": tmp_path / "pred"}, truth, tmp_path / "r", within="slide", panels=["zz"])
    with pytest.raises(TypeError):
        evaluate({"m": tmp_path / "pred"}, truth, tmp_path / "r", nonsense=1)
    assert not (tmp_path / "r").exists()  # nothing written before the inputs are checked


def test_truth_from_a_manifest(tmp_path: Path) -> None:
    write_truth(tmp_path / "annotations", ["s1"])
    (tmp_path / "manifest.csv").write_text("slide,annotation,mask,split\nslides/s1.tif,annotations/s1.geojson,,test\n")
    entries = find_truth(tmp_path)
    assert entries["s1"].slide == tmp_path / "slides" / "s1.tif"
    assert entries["s1"].truth == tmp_path / "annotations" / "s1.geojson"


def test_truth_folder_names_and_conflicts(tmp_path: Path) -> None:
    write_truth(tmp_path / "t", ["s1"])
    (tmp_path / "t" / "s2_mask.tif").write_bytes(b"")
    (tmp_path / "t" / "notes.txt").write_text("ignored")
    assert {stem: e.truth.name for stem, e in find_truth(tmp_path / "t").items()} == {
        "s1": "s1.geojson",
        "s2": "s2_mask.tif",
    }
    (tmp_path / "t" / "s1_annotations.xml").write_text("<ASAP_Annotations/>")
    with pytest.raises(DataError, match=r"two truth files for slide 's1': s1\.geojson and s1_annotations\.xml"):
        find_truth(tmp_path / "t")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no annotation or mask files"):
        find_truth(tmp_path / "empty")
    (tmp_path / "m.csv").write_text("slide,annotation\nslides/s1.tif,\n")
    normal = find_truth(tmp_path / "m.csv")["s1"]  # a manifest row without annotation: a tumour-free slide
    assert normal.truth is None and normal.normal


def test_predict_then_evaluate_from_the_cli(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    slide = write_slide(tmp_path / "s1.tif")
    model = create_model("unet", mpps=[2.0], width=4, depth=2)
    ckpt = save_checkpoint(tmp_path / "m.pt", make_checkpoint(model, InputSpec((2.0,), 32)))
    assert run_slide(ckpt, slide, tmp_path / "pred", PredictSettings()).status == "done"
    truth = write_truth(tmp_path / "t", ["s1"])
    result = CliRunner().invoke(
        app,
        ["evaluate", "--pred", f"unet={tmp_path / 'pred'}", "--truth", str(truth), "--out", str(tmp_path / "rep")],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert metrics["settings"]["within"] == "tissue" and 0 <= metrics["models"]["unet"]["pooled"]["auc"] <= 1
    bad = CliRunner().invoke(
        app,
        ["evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "nope"), "--out", str(tmp_path / "r")],
    )
    assert bad.exit_code == 1 and "truth not found" in bad.output


@pytest.mark.slow
def test_predict_and_evaluate_a_synth_folder(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    manifest = generate(tmp_path / "synth", 2, seed=0, size_px=1024, mpp=0.5)
    slides = sorted((tmp_path / "synth" / "slides").glob("*.tif"))
    model = create_model("unet", mpps=[4.0], width=4, depth=2)
    ckpt = save_checkpoint(tmp_path / "m.pt", make_checkpoint(model, InputSpec((4.0,), 32)))
    results = predict_slides(ckpt, slides, tmp_path / "pred", PredictSettings())
    assert [r.status for r in results] == ["done", "done"]
    result = evaluate({"unet": tmp_path / "pred"}, manifest.parent, tmp_path / "rep", mpp=8.0, within="slide")
    assert result["slides"] == [s.stem for s in slides]
    assert result["models"]["unet"]["pooled"]["n_positive"] + result["models"]["unet"]["pooled"]["n_negative"] == (
        2 * 64 * 64
    )
