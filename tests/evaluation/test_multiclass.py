"""Multi-class evaluation on hand-made maps: confusion matrix, per-class Dice/IoU/AUC, outputs, bad inputs."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mrseg.core.errors import DataError
from mrseg.core.label_spec import LabelSpec
from mrseg.evaluation.evaluate import evaluate, strips
from mrseg.evaluation.maps import SlideMaps
from mrseg.evaluation.plan import plan_evaluation
from mrseg.evaluation.scores import Scores
from mrseg.evaluation.settings import EvaluateSettings
from mrseg.evaluation.truth import open_truth
from mrseg.wsi.geometry import ReadGrid
from mrseg.wsi.tiff import write_pyramidal_tiff

DIMS = (400, 300)  # level-0 (width, height) at 0.5 µm/px
SLIDE_MPP = 0.5
GRID = (75, 100)  # evaluation grid (rows, columns) at 2 µm/px: one grid pixel = 4 x 4 level-0 pixels
SPEC = LabelSpec(
    classes=("background", "tumor", "lymphoid"),
    label_map={"tumor": 1, "lymphoid": 2, "exclusion": -1},
    activation="softmax",
)
# truth on the grid: tumour rows 10:30 x cols 10:40 (600 px), lymphoid rows 40:60 x cols 50:90 (800 px)
TRUTH_RECTS = {"tumor": (10, 30, 10, 40), "lymphoid": (40, 60, 50, 90)}


def truth_grid() -> np.ndarray:
    labels = np.zeros(GRID, np.uint8)
    for name, (r0, r1, c0, c1) in TRUTH_RECTS.items():
        labels[r0:r1, c0:c1] = SPEC.label_map[name]
    return labels


def predicted_grid() -> np.ndarray:
    """Tumour shifted 10 columns right; the right half of the lymphoid region called tumour."""
    labels = np.zeros(GRID, np.uint8)
    labels[10:30, 20:50] = 1
    labels[40:60, 50:70] = 2
    labels[40:60, 70:90] = 1
    return labels


#: Truth (rows) x predicted (columns) of the two grids above, counted by hand.
EXPECTED_CONFUSION = [[5900, 200, 0], [200, 400, 0], [0, 400, 400]]


def write_truth(folder: Path, stem: str = "s1", rects: dict[str, tuple[int, int, int, int]] = TRUTH_RECTS) -> Path:
    features = []
    for name, (r0, r1, c0, c1) in rects.items():
        x0, y0, x1, y1 = 4 * c0, 4 * r0, 4 * c1, 4 * r1
        ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"classification": {"name": name}},
            }
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return folder


def class_values(labels: np.ndarray, num_classes: int = 3) -> list[np.ndarray]:
    """Stored uint8 probability of each class: 204 (0.8) for the predicted class, 25 (~0.1) for the others."""
    return [np.where(labels == k, 204, 25).astype(np.uint8) for k in range(num_classes)]


def write_prediction(
    folder: Path,
    labels: np.ndarray,
    *,
    stem: str = "s1",
    spec: LabelSpec = SPEC,
    label_map: np.ndarray | None = None,
    scale: int = 1,
    omit: tuple[str, ...] = (),
) -> Path:
    """Maps of a softmax prediction whose argmax is ``labels`` (grid pixels), at ``2 / scale`` µm/px."""
    folder.mkdir(parents=True, exist_ok=True)
    block = np.ones((scale, scale), np.uint8)
    values = [np.kron(v, block) for v in class_values(labels, spec.num_classes)]
    mpp = 2.0 / scale
    outputs = {"map": f"{stem}.tif", "record": f"{stem}.json", "labels": f"{stem}_labels.tif"}
    write_pyramidal_tiff(folder / outputs["map"], 255 - values[0], mpp, compression="zlib", min_size=16)
    for k in range(1, spec.num_classes):
        outputs[f"class{k}"] = f"{stem}_class{k}.tif"
        write_pyramidal_tiff(folder / outputs[f"class{k}"], values[k], mpp, compression="zlib", min_size=16)
    label_image = np.kron(labels if label_map is None else label_map, block)
    write_pyramidal_tiff(folder / outputs["labels"], label_image, mpp, compression="zlib", min_size=16)
    record: dict[str, Any] = {
        "slide": {"path": str(folder / f"{stem}_slide.tif"), "dimensions": list(DIMS), "mpp": SLIDE_MPP},
        "checkpoint": {"labels": spec.to_dict()},
        "map": {"mpp": mpp},
        "outputs": {k: v for k, v in outputs.items() if k not in omit},
    }
    (folder / f"{stem}.json").write_text(json.dumps(record))
    return folder


def run(tmp_path: Path, preds: dict[str, Path], truth: Path | None = None) -> dict[str, Any]:
    truth = truth or write_truth(tmp_path / "truth")
    return evaluate(preds, truth, tmp_path / "rep", mpp=2.0, within="slide")


def test_confusion_matrix_and_per_class_scores_by_hand(tmp_path: Path) -> None:
    result = run(tmp_path, {"m": write_prediction(tmp_path / "pred", predicted_grid())})
    multi = result["models"]["m"]["multiclass"]
    pooled = multi["pooled"]
    assert multi["predicted_from"] == ["label map"]
    assert pooled["confusion"] == EXPECTED_CONFUSION
    tumour, lymphoid = pooled["classes"]["tumor"], pooled["classes"]["lymphoid"]
    # tumour: tp 400, fp 200 + 400, fn 200; lymphoid: tp 400, fp 0, fn 400
    assert tumour["dice"] == pytest.approx(2 * 400 / (2 * 400 + 600 + 200)) == pytest.approx(0.5)
    assert tumour["iou"] == pytest.approx(400 / 1200)
    assert (tumour["precision"], tumour["recall"]) == (pytest.approx(400 / 1000), pytest.approx(400 / 600))
    assert lymphoid["dice"] == pytest.approx(800 / 1200) and lymphoid["iou"] == pytest.approx(0.5)
    assert pooled["classes"]["background"]["dice"] == pytest.approx(2 * 5900 / (2 * 5900 + 200 + 200))
    assert (tumour["n_truth"], tumour["n_predicted"], lymphoid["n_truth"]) == (600, 1000, 800)
    assert pooled["macro"]["dice"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert pooled["macro"]["iou"] == pytest.approx((1 / 3 + 0.5) / 2)
    assert pooled["accuracy"] == pytest.approx(6700 / 7500)
    assert multi["per_slide"]["s1"]["confusion"] == EXPECTED_CONFUSION
    assert result["settings"]["classes"] == ["background", "tumor", "lymphoid"]
    assert result["settings"]["macro_over"] == ["tumor", "lymphoid"]


def test_one_vs_rest_auc_equals_sklearn(tmp_path: Path) -> None:
    result = run(tmp_path, {"m": write_prediction(tmp_path / "pred", predicted_grid())})
    classes = result["models"]["m"]["multiclass"]["pooled"]["classes"]
    truth = truth_grid().ravel()
    stored = class_values(predicted_grid())
    for label, name in enumerate(SPEC.classes):
        expected = roc_auc_score(truth == label, stored[label].ravel() / 255)
        assert classes[name]["auc"] == pytest.approx(expected, abs=1e-9), name
    # the binary section is the foreground (label > 0) against the background, as for binary tasks
    pooled = result["models"]["m"]["pooled"]
    assert pooled["n_positive"] == 1400 and pooled["n_negative"] == 6100
    assert pooled["auc"] == pytest.approx(roc_auc_score(truth > 0, 1 - stored[0].ravel() / 255), abs=1e-9)


def test_argmax_of_class_maps_without_label_map(tmp_path: Path) -> None:
    """Without a recorded label map the predicted label is the argmax of the class maps: same matrix."""
    pred = write_prediction(tmp_path / "pred", predicted_grid(), omit=("labels",))
    multi = run(tmp_path, {"m": pred})["models"]["m"]["multiclass"]
    assert multi["predicted_from"] == ["argmax of class maps"]
    assert multi["pooled"]["confusion"] == EXPECTED_CONFUSION


def test_finer_maps_and_a_perfect_prediction(tmp_path: Path) -> None:
    """Maps at 0.5 µm/px (level 0 of the slide) evaluated at 2 µm/px: a perfect prediction scores 1."""
    pred = write_prediction(tmp_path / "pred", truth_grid(), scale=4)
    pooled = run(tmp_path, {"m": pred})["models"]["m"]["multiclass"]["pooled"]
    assert np.count_nonzero(np.asarray(pooled["confusion"]) - np.diag(np.diag(pooled["confusion"]))) == 0
    assert all(c["dice"] == pytest.approx(1.0) and c["auc"] == pytest.approx(1.0) for c in pooled["classes"].values())
    assert pooled["macro"]["dice"] == pytest.approx(1.0)


def test_outputs_csv_rows_and_figures(tmp_path: Path) -> None:
    preds = {
        "good": write_prediction(tmp_path / "good", truth_grid()),
        "shifted": write_prediction(tmp_path / "shifted", predicted_grid()),
    }
    run(tmp_path, preds)
    files = sorted(p.name for p in (tmp_path / "rep").iterdir())
    assert files == ["confusion.png", "metrics.csv", "metrics.json", "panel_s1.png", "roc.png", "roc_classes.png"]
    rows = list(csv.DictReader((tmp_path / "rep" / "metrics.csv").open()))
    assert list(rows[0]) == [
        "model", "slide", "class", "auc", "threshold_kind", "threshold", "dice", "iou", "precision", "recall",
        "specificity", "accuracy", "n_positive", "n_negative",
    ]  # fmt: skip
    # per model and slide (pooled + s1): 2 foreground rows (0.5, best Dice), 3 class rows, 1 macro row
    assert len(rows) == 2 * 2 * (2 + 3 + 1)
    macro = [r for r in rows if r["model"] == "shifted" and r["slide"] == "pooled" and r["class"] == "macro"]
    assert len(macro) == 1 and float(macro[0]["dice"]) == pytest.approx(7 / 12, abs=1e-5)
    tumour = next(r for r in rows if r["model"] == "shifted" and r["slide"] == "s1" and r["class"] == "tumor")
    assert (tumour["threshold_kind"], tumour["n_positive"], tumour["n_negative"]) == ("argmax", "600", "6900")
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    histograms = metrics["models"]["good"]["multiclass"]["pooled"]["histograms"]
    assert set(histograms) == set(SPEC.classes) and histograms["tumor"]["bins"] == 1024


def test_strips_tile_the_grid_and_their_size_does_not_change_the_scores(tmp_path: Path) -> None:
    grid = ReadGrid.covering(DIMS, SLIDE_MPP, 2.0)
    assert grid.shape == GRID
    parts = list(strips(grid, 1000))  # 10 rows of 100 pixels
    assert [p.height for p in parts] == [10] * 7 + [5] and all(p.width == 100 for p in parts)
    assert parts[0].box_l0[1] == 0 and parts[-1].box_l0[3] == DIMS[1]
    assert all(a.box_l0[3] == pytest.approx(b.box_l0[1]) for a, b in itertools.pairwise(parts))
    assert len(list(strips(grid, 10))) == GRID[0]  # narrower than a row: one row per strip

    pred = write_prediction(tmp_path / "pred", predicted_grid())
    plan = plan_evaluation({"m": pred}, write_truth(tmp_path / "truth"), EvaluateSettings(within="slide"))
    record = plan.slide_records("s1")["m"]
    summaries = []
    for pixels in (grid.width * grid.height, 700, 1):
        scores = Scores.empty(plan)
        with open_truth(plan.truth["s1"], record, plan.labels, within="slide", tissue_mpp=8.0) as truth:
            with SlideMaps(record, 2.0, classes=True) as maps:
                for strip in strips(grid, pixels):
                    scores.add(maps, strip, truth.labels(strip), truth.valid(strip))
        assert scores.classes is not None
        summaries.append((scores.binary.summary(), scores.classes.summary()))
    assert summaries[0] == summaries[1] == summaries[2]
    assert summaries[0][1]["confusion"] == EXPECTED_CONFUSION


# ----------------------------------------------------------------------------- bad inputs


def test_unknown_annotation_class_names_class_and_file(tmp_path: Path) -> None:
    truth = write_truth(tmp_path / "truth", rects={"tumor": (10, 30, 10, 40), "necrosis": (40, 60, 50, 90)})
    pred = write_prediction(tmp_path / "pred", predicted_grid())
    with pytest.raises(DataError, match=r"s1\.geojson: annotation class\(es\) 'necrosis' not in the label map"):
        run(tmp_path, {"m": pred}, truth)


def test_truth_label_outside_the_spec_names_the_mask(tmp_path: Path) -> None:
    mask = truth_grid()
    mask[0:5, 0:5] = 3  # only three classes: labels 0..2
    (tmp_path / "truth").mkdir()
    write_pyramidal_tiff(tmp_path / "truth" / "s1_mask.tif", mask, 2.0, compression="zlib", min_size=16)
    pred = write_prediction(tmp_path / "pred", predicted_grid())
    with pytest.raises(DataError, match=r"s1_mask\.tif: label 3 is not a class"):
        run(tmp_path, {"m": pred}, tmp_path / "truth")


def test_a_mask_truth_with_known_labels_is_read_as_labels(tmp_path: Path) -> None:
    (tmp_path / "truth").mkdir()
    write_pyramidal_tiff(tmp_path / "truth" / "s1_mask.tif", truth_grid(), 2.0, compression="zlib", min_size=16)
    multi = run(tmp_path, {"m": write_prediction(tmp_path / "pred", predicted_grid())}, tmp_path / "truth")
    assert multi["models"]["m"]["multiclass"]["pooled"]["confusion"] == EXPECTED_CONFUSION


def test_label_map_with_a_label_outside_the_spec(tmp_path: Path) -> None:
    bad = predicted_grid()
    bad[0, 0] = 7
    pred = write_prediction(tmp_path / "pred", predicted_grid(), label_map=bad)
    with pytest.raises(DataError, match=r"s1_labels\.tif: label 7 is not a class"):
        run(tmp_path, {"m": pred})


def test_missing_class_map_and_missing_label_map_file(tmp_path: Path) -> None:
    pred = write_prediction(tmp_path / "pred", predicted_grid(), omit=("class2",))
    with pytest.raises(DataError, match=r"s1\.json: no output 'class2' recorded"):
        run(tmp_path, {"m": pred})
    pred = write_prediction(tmp_path / "pred2", predicted_grid())
    (pred / "s1_labels.tif").unlink()
    with pytest.raises(DataError, match=r"s1_labels\.tif: cannot read prediction map"):
        run(tmp_path, {"m": pred})


def test_models_with_different_label_specs_are_refused(tmp_path: Path) -> None:
    other = LabelSpec(classes=("background", "tumor", "mantle"), label_map={"tumor": 1, "mantle": 2})
    preds = {
        "a": write_prediction(tmp_path / "a", predicted_grid()),
        "b": write_prediction(tmp_path / "b", predicted_grid(), spec=other),
    }
    with pytest.raises(DataError, match=r"different label specs.*'lymphoid'.*'mantle'"):
        run(tmp_path, preds)
