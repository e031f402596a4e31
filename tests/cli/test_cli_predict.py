"""``mrseg predict`` and ``mrseg evaluate`` end to end on a tiny slide: device, backend, writers, macro scores."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mrseg.cli import app
from mrseg.core.device import resolve_device
from mrseg.inference.settings import DEFAULT_WRITERS

runner = CliRunner()


def _record(out: Path, stem: str = "s1") -> dict:
    return json.loads((out / f"{stem}.json").read_text())


def test_predict_defaults_device_auto_and_the_default_writers(
    tmp_path: Path, slide: Path, binary_checkpoint: Path
) -> None:
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", str(binary_checkpoint), str(slide), "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = _record(out)
    assert record["run"]["device"] == str(resolve_device("auto"))  # --device auto, as in train and demo
    assert record["settings"]["writers"] == list(DEFAULT_WRITERS)
    assert set(record["outputs"]) == {"map", "overlay", "record"}  # binary: the labels writer writes nothing


def test_predict_backend_writers_and_geojson(tmp_path: Path, slide: Path, binary_checkpoint: Path) -> None:
    out = tmp_path / "pred"
    args = ["predict", str(binary_checkpoint), str(slide), "--out", str(out), "--backend", "tiffslide"]
    result = runner.invoke(app, [*args, "--device", "cpu", "--writers", "tiff", "--geojson", "--no-tissue-mask"])
    assert result.exit_code == 0, result.output
    record = _record(out)
    assert record["run"]["backend"] == "tiffslide" and record["run"]["device"] == "cpu"
    assert record["settings"]["writers"] == ["tiff", "geojson"]
    assert record["settings"]["tissue_mask"] is False
    assert set(record["outputs"]) == {"map", "geojson", "record"}
    written = (out / "s1.json").stat().st_mtime_ns
    again = runner.invoke(app, [*args, "--writers", "tiff,geojson", "--no-tissue-mask"])  # device auto now
    assert again.exit_code == 0, again.output
    assert (out / "s1.json").stat().st_mtime_ns == written  # same outputs (device, backend are run-only): skipped


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--backend", "pillow"], "unknown backend 'pillow'"),
        (["--writers", "tiff,pdf"], "unknown writer(s) ['pdf']"),
        (["--device", "tpu"], "--device 'tpu'"),
        (["--tissue-mpp", "0"], "must be a positive"),
    ],
)
def test_predict_refuses_bad_options_before_any_slide(
    tmp_path: Path, slide: Path, binary_checkpoint: Path, extra: list[str], message: str
) -> None:
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", str(binary_checkpoint), str(slide), "--out", str(out), *extra])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not out.exists()


def test_evaluate_logs_the_macro_scores_of_a_multiclass_model(
    tmp_path: Path, slide: Path, three_class_checkpoint: Path, truth: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pred = tmp_path / "pred"
    result = runner.invoke(app, ["predict", str(three_class_checkpoint), str(slide), "--out", str(pred)])
    assert result.exit_code == 0, result.output
    assert {"map", "class1", "class2", "labels"} <= set(_record(pred)["outputs"])
    report = tmp_path / "report"
    with caplog.at_level(logging.INFO, logger="mrseg"):
        args = ["evaluate", "--pred", f"three={pred}", "--truth", str(truth), "--out", str(report), "--eval-mpp", "4"]
        result = runner.invoke(app, [*args, "--within", "slide"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["settings"]["mpp"] == 4.0 and metrics["settings"]["within"] == "slide"
    macro = metrics["models"]["three"]["multiclass"]["pooled"]["macro"]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("three: macro AUC")]
    assert lines == [
        f"three: macro AUC {macro['auc']:.4f}, macro Dice {macro['dice']:.4f} (over the foreground classes)"
    ]
