"""Multi-class end to end: synthetic four-class labels -> packaged recipe (softmax) -> predict -> evaluate.

One small run through the public APIs of every stage; the label spec travels from the config through
the checkpoint and the prediction record to the evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mrseg.core.prediction_record import read_prediction_record
from mrseg.evaluation.evaluate import evaluate
from mrseg.inference.cluster import predict_slides
from mrseg.inference.settings import PredictSettings
from mrseg.models.checkpoint import load_checkpoint
from mrseg.synth import generate
from mrseg.training.config import load_config
from mrseg.training.loop import train


@pytest.mark.slow
def test_four_classes_from_synth_to_per_class_table(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate(data, 3, seed=3, size_px=768, split="train=0.67,val=0.33", labels="multiclass")
    test = tmp_path / "test"
    generate(test, 1, seed=4, size_px=768, labels="multiclass")
    quick = ["train.epochs=1", "train.steps_per_epoch=2", "train.batch_size=4", "sampling.val_samples=8"]
    config = load_config("synthetic_multiclass_mrn", [f"data.path={data}", "data.num_workers=0", *quick])
    train(config, tmp_path / "run", device="cpu")
    checkpoint = tmp_path / "run" / "best.pt"
    assert load_checkpoint(checkpoint).labels.classes == ("background", "tumour", "lymphoid", "other")

    writers = ("tiff", "labels", "overlay", "geojson")
    settings = PredictSettings(device="cpu", overlap=0.0, batch_size=16, writers=writers)
    [result] = predict_slides(checkpoint, sorted((test / "slides").glob("*.tif")), tmp_path / "preds", settings)
    assert result.status == "done", result.error
    record = read_prediction_record(tmp_path / "preds" / "synth_000.json")
    assert record.label_map_path is not None and record.label_map_path.is_file()
    assert all(record.class_map_path(k).is_file() for k in (1, 2, 3))
    features = json.loads(record.output("geojson").read_text())["features"]
    assert {f["properties"]["classification"]["name"] for f in features} <= {"tumour", "lymphoid", "other"}

    result_json = evaluate({"mc": tmp_path / "preds"}, test, tmp_path / "eval", mpp=4.0)
    table = result_json["models"]["mc"]["multiclass"]["pooled"]
    assert list(table["classes"]) == ["background", "tumour", "lymphoid", "other"]
    assert len(table["confusion"]) == 4 and all(len(row) == 4 for row in table["confusion"])
    assert {"auc", "dice", "iou"} <= set(table["macro"])
    assert (tmp_path / "eval" / "confusion.png").is_file()
