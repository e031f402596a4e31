"""One slide's run: outputs and record, resumability, atomicity, settings resolved against the checkpoint, CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openslide
import pytest
from typer.testing import CliRunner

from mrseg.cli import app
from mrseg.core.label_spec import LabelSpec
from mrseg.core.tissue_spec import TissueSettings
from mrseg.inference.cluster import predict_slides
from mrseg.inference.runner import run_slide
from mrseg.inference.settings import PredictSettings
from mrseg.inference.writers import WRITERS, WriteJob, Writer, register_writer
from mrseg.models.checkpoint import Checkpoint, save_checkpoint

SlideFactory = Callable[..., Path]


def test_run_slide_writes_all_outputs_and_a_json_record(
    tmp_path: Path, slide_file: SlideFactory, checkpoint_file: Path
) -> None:
    settings = PredictSettings(writers=("tiff", "labels", "overlay", "geojson"), threshold=0.01)
    result = run_slide(checkpoint_file, slide_file(), tmp_path / "out", settings)
    assert result.status == "done" and result.tiles > 0 and result.worker
    names = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("."))  # not the lock
    assert names == ["s.geojson", "s.json", "s.tif", "s_overlay.png"]
    record = json.loads((tmp_path / "out" / "s.json").read_text())
    assert record["map"]["mpp"] == 1.0 and record["slide"]["dimensions"] == [320, 256]
    assert record["checkpoint"]["sha256"] and record["timings"]["total_s"] > 0
    assert record["run"] == {"device": "cpu", "batch_size": 16, "backend": "openslide"}
    assert record["settings"]["tissue"] == TissueSettings().to_dict()  # the checkpoint has none: the defaults
    assert set(record["timings"]) >= {"open_and_tissue_s", "tiles_s", "model_s", "write_tiff_s", "write_overlay_s"}
    with openslide.OpenSlide(str(tmp_path / "out" / "s.tif")) as osl:
        assert osl.dimensions == (320, 256)
        assert float(osl.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(1.0)
    collection = json.loads((tmp_path / "out" / "s.geojson").read_text())
    assert collection["features"], "threshold 0.01 must outline the predicted tissue"
    minx = min(c[0] for f in collection["features"] for c in f["geometry"]["coordinates"][0])
    assert 20 <= minx <= 80  # the tissue starts at x = 60 level-0 px; tiles touching it extend up to 24 px left


def test_the_record_holds_the_checkpoint_tissue_settings(
    tmp_path: Path, slide_file: SlideFactory, make_ckpt: Callable[..., Checkpoint]
) -> None:
    ckpt = make_ckpt()
    ckpt.tissue = TissueSettings(mpp=16.0)
    path = save_checkpoint(tmp_path / "trained.pt", ckpt)
    slide, out = slide_file(), tmp_path / "out"
    run_slide(path, slide, out)
    assert json.loads((out / "s.json").read_text())["settings"]["tissue"]["mpp"] == 16.0
    assert run_slide(path, slide, out, PredictSettings(tissue_mpp=16.0)).status == "skipped"  # the same resolved values
    assert run_slide(path, slide, out, PredictSettings(tissue_mpp=8.0)).status == "done"
    assert json.loads((out / "s.json").read_text())["settings"]["tissue"]["mpp"] == 8.0


def test_resumable_skip_overwrite_and_settings_change(
    tmp_path: Path, slide_file: SlideFactory, checkpoint_file: Path, make_ckpt: Callable[..., Checkpoint]
) -> None:
    slide = slide_file()
    out = tmp_path / "out"
    assert run_slide(checkpoint_file, slide, out).status == "done"
    stamp = (out / "s.tif").stat().st_mtime_ns
    assert run_slide(checkpoint_file, slide, out).status == "skipped"
    assert (out / "s.tif").stat().st_mtime_ns == stamp
    not_output_defining = PredictSettings(batch_size=3, backend="tiffslide", device="cpu")
    assert run_slide(checkpoint_file, slide, out, not_output_defining).status == "skipped"
    assert run_slide(checkpoint_file, slide, out, overwrite=True).status == "done"
    assert run_slide(checkpoint_file, slide, out, PredictSettings(overlap=0.5)).status == "done"
    # another checkpoint (different weights, same architecture) redoes the slide
    other = save_checkpoint(tmp_path / "other.pt", make_ckpt(seed=1))
    assert run_slide(other, slide, out, PredictSettings(overlap=0.5)).status == "done"
    (out / "s_overlay.png").unlink()  # a missing output means not done
    assert run_slide(other, slide, out, PredictSettings(overlap=0.5)).status == "done"


class Interrupted(Writer):
    """A writer interrupted half-way: the TIFF is complete, this file is not."""

    name = "interrupted"

    def outputs(self, stem: str, labels: LabelSpec) -> dict[str, str]:
        return {"interrupted": f"{stem}.partial"}

    def write(self, job: WriteJob) -> dict[str, Any]:
        job.path("interrupted").write_text("half")
        raise KeyboardInterrupt


def test_interrupted_slide_leaves_no_final_named_output(
    tmp_path: Path, slide_file: SlideFactory, checkpoint_file: Path
) -> None:
    register_writer(Interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_slide(checkpoint_file, slide_file(), tmp_path / "out", PredictSettings(writers=("tiff", "interrupted")))
    finally:
        WRITERS.pop("interrupted")
    assert [p.name for p in (tmp_path / "out").iterdir()] == [".s.lock"]  # no outputs, no temporary folder left


def test_cli_predict_reports_a_bad_slide_and_finishes_the_others(
    tmp_path: Path, slide_file: SlideFactory, checkpoint_file: Path
) -> None:
    good = slide_file("good.tif")
    bad = slide_file("nompp.tif", mpp=None)
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(app, ["predict", str(checkpoint_file), str(bad), str(good), "--out", str(out)])
    assert result.exit_code == 1
    assert "1 of 2 slide(s) failed" in result.output and "nompp.tif" in result.output and "mpp" in result.output
    assert (out / "good.json").is_file() and not (out / "nompp.json").exists()
    again = runner.invoke(app, ["predict", str(checkpoint_file), str(good), "--out", str(out), "--mpp", "1.0"])
    assert again.exit_code == 0, again.output  # --mpp changes the settings: the slide is redone
    results = predict_slides(checkpoint_file, [good, bad], out, PredictSettings(slide_mpp=1.0))
    assert [r.status for r in results] == ["skipped", "done"]
