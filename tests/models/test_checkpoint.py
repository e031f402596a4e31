"""Checkpoint layout: one record of the mpps, label spec and tissue settings, version-1 files still read."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mrseg.core.errors import CheckpointError
from mrseg.core.input_spec import InputSpec
from mrseg.core.label_spec import LabelSpec
from mrseg.core.tissue_spec import TissueSettings
from mrseg.models import create_model
from mrseg.models.checkpoint import VERSION, load_checkpoint, make_checkpoint, save_checkpoint


def _model(num_classes: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("mrn_bilinear", mpps=[0.5, 1.0], num_classes=num_classes, width=2, depth=1)


def test_round_trip_stores_mpps_once_with_labels_and_tissue(tmp_path: Path) -> None:
    labels = LabelSpec(classes=("background", "tumour", "lymphoid", "other"), label_map={"tumour": 1, "lymph": 2})
    spec = InputSpec((0.5, 1.0), 8)
    ckpt = make_checkpoint(_model(4), spec, labels=labels, tissue=TissueSettings(mpp=4.0))
    path = save_checkpoint(tmp_path / "c.pt", ckpt)
    raw = torch.load(path, weights_only=True)
    assert raw["version"] == VERSION == 2 and "mpps" not in raw["model"]["kwargs"]
    back = load_checkpoint(path)
    assert back.input_spec == spec and back.labels == labels and back.tissue == TissueSettings(mpp=4.0)
    model = back.build_model()
    x = torch.zeros(1, 2, 3, 8, 8)
    assert model(x).shape == (1, 4, 8, 8)


def test_mismatches_are_refused() -> None:
    with pytest.raises(CheckpointError, match="differ from the input spec"):
        make_checkpoint(_model(), InputSpec((0.5, 2.0), 8))
    with pytest.raises(CheckpointError, match="output channel"):
        make_checkpoint(_model(1), InputSpec((0.5, 1.0), 8), labels=LabelSpec(classes=("bg", "a", "b")))


def _v1(path: Path, input_mpps: list[float], model_mpps: list[float]) -> Path:
    model = _model()
    raw = {
        "format": "mrseg-checkpoint",
        "version": 1,
        "model": {"name": "mrn_bilinear", "kwargs": {"mpps": model_mpps, "num_classes": 1, "width": 2, "depth": 1}},
        "input": {"mpps": input_mpps, "size_px": 8},
        "state_dict": model.state_dict(),
        "config": {"data": {"tissue_mpp": 16.0}},
    }
    torch.save(raw, path)
    return path


def test_version_1_files_are_read(tmp_path: Path) -> None:
    back = load_checkpoint(_v1(tmp_path / "v1.pt", [0.5, 1.0], [0.5, 1.0]))
    assert back.input_spec.mpps == (0.5, 1.0) and "mpps" not in back.model_kwargs
    assert back.labels == LabelSpec() and back.tissue == TissueSettings(mpp=16.0)
    back.build_model()


def test_version_1_with_disagreeing_mpps_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="disagree"):
        load_checkpoint(_v1(tmp_path / "bad.pt", [0.5, 1.0], [0.5, 2.0]))
