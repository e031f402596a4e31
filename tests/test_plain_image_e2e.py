"""A plain JPEG from the real-data folder, end to end: `mrseg info`, `predict` (--slide-mpp), `evaluate --froc`.

The checkpoint is a tiny untrained U-Net made here and the truth a hand-made GeoJSON rectangle, so the
numbers only show that the trip works on a one-level image without an mpp of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from mrseg.cli import app
from mrseg.core.input_spec import InputSpec
from mrseg.core.prediction_record import read_prediction_record
from mrseg.models import create_model
from mrseg.models.checkpoint import make_checkpoint, save_checkpoint

runner = CliRunner()


def write_truth(folder: Path) -> Path:
    """``histo.geojson``: one tumour rectangle, level-0 px (20, 20)-(480, 280) of the 500 x 300 image."""
    folder.mkdir()
    ring = [[20, 20], [480, 20], [480, 280], [20, 280], [20, 20]]
    feature = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"classification": {"name": "Tumor"}},
    }
    (folder / "histo.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    return folder


@pytest.mark.realdata
def test_a_jpeg_is_predicted_and_evaluated(tmp_path: Path, shared_data: Path) -> None:
    torch.set_num_threads(1)
    jpeg = shared_data / "images" / "histo.jpg"
    info = runner.invoke(app, ["info", str(jpeg)])
    assert info.exit_code == 0 and "500 x 300 px, mpp unknown" in info.stdout
    torch.manual_seed(0)
    model = create_model("unet", mpps=[2.0], width=4, depth=2)
    ckpt = save_checkpoint(tmp_path / "m.pt", make_checkpoint(model, InputSpec((2.0,), 32)))
    refused = runner.invoke(app, ["predict", str(ckpt), str(jpeg), "--out", str(tmp_path / "none")])
    assert refused.exit_code != 0 and "--slide-mpp" in refused.output  # no mpp in a JPEG: it must be given

    args = ["predict", str(ckpt), str(jpeg), "--out", str(tmp_path / "pred"), "--slide-mpp", "0.5"]
    predicted = runner.invoke(app, [*args, "--device", "cpu", "--writers", "tiff,overlay,ome"])
    assert predicted.exit_code == 0, predicted.output
    record = read_prediction_record(tmp_path / "pred" / "histo.json")
    assert record.slide_dimensions == (500, 300) and record.slide_mpp == 0.5 and record.map_mpp == 2.0
    assert tifffile.imread(record.map_path).shape == (75, 125)  # 250 x 150 µm at 2 µm/px
    with tifffile.TiffFile(record.output("ome")) as tif:
        assert tif.is_ome and 'PhysicalSizeX="2.0"' in str(tif.ome_metadata)

    truth = write_truth(tmp_path / "truth")
    args = ["evaluate", "--pred", f"unet={tmp_path / 'pred'}", "--truth", str(truth), "--out", str(tmp_path / "rep")]
    evaluated = runner.invoke(app, [*args, "--froc", "--eval-mpp", "2"])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert metrics["slides"] == ["histo"] and metrics["settings"]["within"] == "tissue"
    pooled = metrics["models"]["unet"]["pooled"]
    assert pooled["n_positive"] > 0 and 0 <= pooled["auc"] <= 1
    lesions = metrics["models"]["unet"]["lesions"]
    # By hand: the 230 x 130 µm rectangle grown by 37.5 µm a side has a major axis of about 350 µm > 275: one lesion.
    assert lesions["froc"]["n_lesions"] == 1 and lesions["froc"]["n_itc"] == 0
    row = lesions["per_slide"]["histo"]
    assert row["tumour"] is True and row["detected"] in (0, 1) and row["detections"] >= row["fp"] + row["detected"]
    assert 0 <= lesions["froc"]["score"] <= 1 and np.isnan(lesions["slide"]["auc"])  # one slide: no slide-level AUC
    assert {"froc.png", "froc.csv", "slides.csv", "roc.png", "panel_histo.png"} <= {
        p.name for p in (tmp_path / "rep").iterdir()
    }
