"""Typed training config: YAML in/out, --set overrides, validation errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mrseg.core.errors import ConfigError
from mrseg.core.label_spec import LabelSpec
from mrseg.core.tissue_spec import TissueSettings
from mrseg.models import create_model
from mrseg.models.sizes import required_multiple
from mrseg.training.config import (
    CAMELYON16_NON_EXHAUSTIVE,
    Config,
    apply_overrides,
    config_from_dict,
    diff_configs,
    load_config,
    packaged_configs_dir,
    update_config,
)


def test_defaults_are_the_paper_recipe() -> None:
    c = Config()
    assert c.train.batch_size == 16
    assert c.train.lr == 1e-3 and c.train.betas == (0.9, 0.999) and c.train.eps == 1e-8
    assert c.train.l2 == 0.005 and c.train.epochs == 500
    assert c.model.mpps == (0.5, 1.0, 2.0, 4.0) and c.model.patch_size == 512
    assert c.sampling.positive_fraction == 0.5 and c.data.val_fraction == 0.2


def test_yaml_round_trip(tmp_path: Path) -> None:
    c = apply_overrides(Config(), ["train.epochs=3", "model.mpps=[1.0, 2.0]", "data.exclude=[a, b]"])
    c.save(tmp_path / "c.yaml")
    back = load_config(tmp_path / "c.yaml")
    assert back == c
    assert back.model.mpps == (1.0, 2.0) and back.data.exclude == ("a", "b")


def test_overrides_are_typed() -> None:
    c = apply_overrides(
        Config(), ["model.width=16", "train.patience=5", "train.scheduler=plateau", "augment.enabled=false"]
    )
    assert c.model.width == 16 and c.train.patience == 5 and c.train.scheduler == "plateau"
    assert c.augment.enabled is False
    assert apply_overrides(c, ["train.patience=null"]).train.patience is None


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("model.widht=16", "model.widht"),
        ("nosection.x=1", "nosection"),
        ("model.width=abc", "model.width"),
        ("train.epochs=0", "train.epochs"),
        ("train.scheduler=linear", "train.scheduler"),
        ("model.mpps=[2.0, 1.0]", "model.mpps"),
        ("train.lr", "key=value"),
    ],
)
def test_bad_override_names_the_key(override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("[", r"\[")):
        apply_overrides(Config(), [override])


def test_frozen_and_extra_forbidden(tmp_path: Path) -> None:
    c = Config()
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type
        c.train.epochs = 3  # type: ignore[misc]
    (tmp_path / "bad.yaml").write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"train\.epoch: unknown key"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")


def test_unet_needs_one_mpp() -> None:
    with pytest.raises(ConfigError, match="unet"):
        apply_overrides(Config(), ["model.name=unet"])
    assert apply_overrides(Config(), ["model.name=unet", "model.mpps=[2.0]"]).model.mpps == (2.0,)


def test_model_kwargs_accept_new_keys_and_update_config() -> None:
    c = update_config(Config(), {"model.kwargs.in_channels": 3, "data.path": "/x: y # z"})
    assert c.model.kwargs == {"in_channels": 3} and c.data.path == "/x: y # z"
    assert diff_configs(Config(), c) == ["data.path", "model.kwargs.in_channels"]


def test_missing_config_lists_packaged_ones() -> None:
    with pytest.raises(ConfigError, match="synthetic_unet"):
        load_config("does_not_exist.yaml")


PACKAGED = sorted(p.name for p in packaged_configs_dir().glob("*.yaml"))


def test_all_recipes_present() -> None:
    expected = {f"camelyon16_unet_{m}.yaml" for m in ("0.5", "1", "2", "4")} | {
        "camelyon16_mrn_bilinear.yaml",
        "camelyon16_mrn_transposed.yaml",
        "synthetic_unet.yaml",
        "synthetic_mrn_bilinear.yaml",
        "synthetic_mrn_transposed.yaml",
        "synthetic_multiclass_mrn.yaml",
        "synthetic_multiclass_unet.yaml",
    }
    assert expected <= set(PACKAGED)


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_recipes_load_and_build(name: str) -> None:
    c = load_config(name)
    assert c.model.patch_size % required_multiple(c.model.depth, c.model.mpps) == 0
    if c.model.kwargs.get("encoder", "unet") != "unet":
        pytest.importorskip("timm", reason="timm backbone recipes build only with the timm extra")
    create_model(c.model.name, **c.model.create_kwargs())
    if name.startswith("camelyon16"):
        assert c.data.exclude == CAMELYON16_NON_EXHAUSTIVE and len(c.data.exclude) == 20
        assert c.model.patch_size == 512 and c.train.batch_size == 16
        assert c.train.l2 == 0.005 and c.train.epochs == 500
    else:
        assert c.model.patch_size == 64 and c.model.depth == 3


def test_input_spec_from_model_config() -> None:
    spec = apply_overrides(Config(), ["model.patch_size=64", "model.mpps=[1.0, 2.0]"]).model.input_spec()
    assert spec.size_px == 64 and spec.mpps == (1.0, 2.0)


# --- labels and tissue --------------------------------------------------------------------------

FOUR = ["background", "tumour", "lymphoid", "other"]


def test_default_labels_are_the_binary_camelyon_spec() -> None:
    c = Config()
    assert c.labels == LabelSpec() and c.model.num_classes == 1 and c.labels.activation == "sigmoid"
    assert c.data.tissue == TissueSettings()
    for name in ("synthetic_mrn_bilinear", "camelyon16_unet_1"):
        assert load_config(name).labels == LabelSpec()  # recipes without a labels section: unchanged


def test_labels_and_num_classes_derive_each_other() -> None:
    given_labels = config_from_dict({"labels": {"classes": FOUR, "label_map": {"tumour": 1, "lymphoid": 2}}})
    assert given_labels.model.num_classes == 4 and given_labels.labels.activation == "softmax"
    given_outputs = config_from_dict({"model": {"num_classes": 3}})
    assert given_outputs.labels == LabelSpec.for_outputs(3)
    two_softmax = config_from_dict({"labels": {"activation": "softmax"}})
    assert two_softmax.model.num_classes == 2 and two_softmax.labels.classes == ("background", "tumor")


def test_num_classes_and_labels_must_agree() -> None:
    with pytest.raises(ConfigError, match=r"model\.num_classes=1 does not fit labels: .* need 4 output"):
        config_from_dict({"model": {"num_classes": 1}, "labels": {"classes": FOUR}})
    with pytest.raises(ConfigError, match=r"model\.num_classes=3 does not fit labels"):
        apply_overrides(Config(), ["model.num_classes=3", f"labels.classes=[{', '.join(FOUR)}]"])


def test_overriding_one_of_the_pair_rederives_the_other() -> None:
    c = apply_overrides(Config(), [f"labels.classes=[{', '.join(FOUR)}]", "labels.label_map={tumour: 1, other: 3}"])
    assert c.model.num_classes == 4 and c.labels.activation == "softmax" and len(c.labels.colors) == 4
    assert apply_overrides(c, ["labels.label_map.lymphoid=2"]).labels.label_map == {
        "tumour": 1,
        "other": 3,
        "lymphoid": 2,
    }
    assert apply_overrides(Config(), ["model.num_classes=3"]).labels == LabelSpec.for_outputs(3)
    with pytest.raises(ConfigError, match="num_classes=2 does not fit"):  # explicit labels stay and must fit
        apply_overrides(c, ["model.num_classes=2"])


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("labels.classes=[background]", "labels: labels need a background"),
        ("labels.activation=relu", "labels.activation"),
        ("labels.label_map.lymphoid=7", "labels: label map"),
        ("labels.colour=[1, 2, 3]", "labels.colour: unknown key"),
        ("data.tissue.mpp=-1", "data.tissue: tissue mpp must be a positive number"),
        ("data.tissue.smooth=1", "data.tissue.smooth"),
    ],
)
def test_bad_labels_and_tissue_name_the_key(override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        apply_overrides(Config(), [override])


def test_tissue_mpp_is_read_as_tissue_settings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "old.yaml").write_text("data:\n  tissue_mpp: 4.0\n")
    old = load_config(tmp_path / "old.yaml")
    assert old.data.tissue == TissueSettings(mpp=4.0) and "data.tissue_mpp is deprecated" in caplog.text
    assert "tissue_mpp" not in old.to_dict()["data"]
    assert apply_overrides(Config(), ["data.tissue_mpp=2.0"]).data.tissue.mpp == 2.0
    (tmp_path / "both.yaml").write_text("data:\n  tissue_mpp: 4.0\n  tissue:\n    mpp: 2.0\n")
    with pytest.raises(ConfigError, match="disagree"):
        load_config(tmp_path / "both.yaml")


def test_labels_and_tissue_round_trip(tmp_path: Path) -> None:
    c = apply_overrides(Config(), [f"labels.classes=[{', '.join(FOUR)}]", "data.tissue.smooth_um=4.0"])
    c.save(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == c


@pytest.mark.parametrize("name", ["synthetic_multiclass_mrn", "synthetic_multiclass_unet"])
def test_multiclass_recipes(name: str) -> None:
    c = load_config(name)
    assert c.labels.classes == tuple(FOUR) and c.labels.activation == "softmax" and c.model.num_classes == 4
    assert c.labels.label_map == {"tumour": 1, "lymphoid": 2, "other": 3}
    assert c.model.name == ("unet" if name.endswith("unet") else "mrn_bilinear")
