"""Training's checkpoints: the label spec and tissue settings of the config are stored; old runs resume exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mrseg.core.errors import DataError
from mrseg.core.label_spec import LabelSpec
from mrseg.core.tissue_spec import TissueSettings
from mrseg.models.checkpoint import load_checkpoint
from mrseg.models.inputs import to_tensor
from mrseg.training.config import load_config
from mrseg.training.loop import resume_config, train
from training_data import MULTICLASS, make_dataset, make_multiclass_dataset, multiclass_overrides, tiny_overrides


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"), 5)


def _same_weights(a: Path, b: Path) -> bool:
    x, y = load_checkpoint(a).state_dict, load_checkpoint(b).state_dict
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_checkpoints_record_the_label_spec_and_tissue_settings(data: Path, tmp_path: Path) -> None:
    cfg = load_config(None, tiny_overrides(data, **{"train.epochs": 1, "data.tissue.mpp": 16.0}))
    train(cfg, tmp_path / "r", device="cpu")
    for name in ("last.pt", "best.pt"):
        ckpt = load_checkpoint(tmp_path / "r" / name)
        assert ckpt.labels == LabelSpec() == cfg.labels
        assert ckpt.tissue == TissueSettings(mpp=16.0) == cfg.data.tissue
        assert ckpt.config is not None and ckpt.config["labels"]["activation"] == "sigmoid"


def test_multiclass_training_end_to_end(tmp_path: Path) -> None:
    manifest = make_multiclass_dataset(tmp_path / "data", 3)
    cfg = load_config(None, multiclass_overrides(manifest, **{"train.epochs": 1}))
    assert cfg.model.num_classes == 4 and cfg.labels.activation == "softmax"
    result = train(cfg, tmp_path / "mc", device="cpu")
    assert result.best_val_loss is not None and 0 < result.best_val_loss < 5
    ckpt = load_checkpoint(tmp_path / "mc" / "best.pt")
    assert ckpt.labels == MULTICLASS and ckpt.model_kwargs["num_classes"] == 4
    x = to_tensor(torch.zeros(1, 2, 16, 16, 3, dtype=torch.uint8), ckpt.input_spec)
    assert ckpt.build_model()(x).shape == (1, 4, 16, 16)


def test_an_unknown_label_stops_before_training(data: Path, tmp_path: Path) -> None:
    cfg = load_config(None, multiclass_overrides(data))  # binary data: group '_0' is no class of the spec
    with pytest.raises(DataError, match=r"slide_00\.xml: annotation group '_0' is not in labels\.label_map"):
        train(cfg, tmp_path / "u", device="cpu")
    assert not (tmp_path / "u" / "last.pt").exists()


def _as_written_before(path: Path) -> None:
    """Rewrite ``path`` as runs started before label specs and tissue settings existed wrote it.

    Layout version 1 (mpps in the model kwargs, no ``labels``/``tissue`` records) holding the old
    configuration (no ``labels`` section, ``data.tissue_mpp``).
    """
    raw = torch.load(path, weights_only=True)
    config = raw["config"]
    del config["labels"]
    config["data"]["tissue_mpp"] = config["data"].pop("tissue")["mpp"]
    raw["version"] = 1
    raw["model"]["kwargs"]["mpps"] = raw["input"]["mpps"]
    del raw["labels"], raw["tissue"]
    torch.save(raw, path)


def test_a_run_started_before_resumes_exactly(data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    train(load_config(None, tiny_overrides(data)), tmp_path / "full", device="cpu")
    train(load_config(None, tiny_overrides(data, **{"train.epochs": 1})), tmp_path / "part", device="cpu")
    _as_written_before(tmp_path / "part" / "last.pt")
    old = load_checkpoint(tmp_path / "part" / "last.pt")
    assert old.labels == LabelSpec() and old.tissue == TissueSettings(mpp=8.0)
    cfg = resume_config(tmp_path / "part", ["train.epochs=2"])
    assert "data.tissue_mpp is deprecated" in caplog.text
    assert cfg.labels == LabelSpec() and cfg.data.tissue == TissueSettings(mpp=8.0)
    train(cfg, tmp_path / "part", resume=True, device="cpu")
    assert _same_weights(tmp_path / "full" / "last.pt", tmp_path / "part" / "last.pt")
    resumed = load_checkpoint(tmp_path / "part" / "last.pt")
    assert resumed.epoch == 2 and resumed.tissue == TissueSettings(mpp=8.0)
    assert resumed.config is not None and "tissue_mpp" not in resumed.config["data"]
