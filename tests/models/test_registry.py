"""Tests of mrseg.models.registry and the base model: names, options, hparams, a user's architecture and encoder."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from model_tester import patches
from torch import nn

from mrseg.core.errors import CheckpointError, ModelConfigError
from mrseg.core.input_spec import InputSpec
from mrseg.models import (
    MODELS,
    MRN,
    Encoder,
    SegmentationModel,
    UNet,
    create_model,
    model_names,
    model_options,
    register_model,
)
from mrseg.models.checkpoint import Checkpoint, make_checkpoint

NAMES = ["unet", "mrn_bilinear", "mrn_transposed"]


def test_model_names_and_options() -> None:
    assert model_names() == NAMES
    assert model_options("unet") == ["mpps", "num_classes", "width", "depth", "in_channels", "encoder", "freeze"]
    assert model_options("mrn_bilinear") == [
        "mpps", "num_classes", "width", "depth", "in_channels", "fuser", "upscale_init", "encoder", "branch_weights",
        "freeze",
    ]  # fmt: skip
    assert MODELS["mrn_transposed"].cls is MRN and dict(MODELS["mrn_transposed"].presets) == {"upscale": "transposed"}


@pytest.mark.parametrize("name", NAMES)
def test_hparams_record_every_option(name: str) -> None:
    mpps = [0.5] if name == "unet" else [0.5, 2.0]
    hp = create_model(name, mpps=mpps, num_classes=2, width=2, depth=1, in_channels=4).hparams
    expected = {
        "name": name, "mpps": mpps, "num_classes": 2, "width": 2, "depth": 1, "in_channels": 4, "encoder": "unet",
        "freeze": [],
    }  # fmt: skip
    mrn = {**expected, "fuser": "concat", "upscale_init": "random", "branch_weights": "separate"}
    assert hp == (expected if name == "unet" else mrn)


def test_directly_built_models_record_hparams() -> None:
    assert UNet([0.5], width=2, depth=1).hparams["name"] == "unet"
    mrn = MRN([0.5, 1.0], upscale="transposed", width=2, depth=1)
    assert mrn.hparams == create_model("mrn_transposed", mpps=[0.5, 1.0], width=2, depth=1).hparams
    assert mrn.upscale == "transposed" and mrn.fuser == "concat"


def test_fusion_spelling_warns_and_means_upscale() -> None:
    torch.manual_seed(0)
    new = MRN([0.5, 1.0], upscale="transposed", width=2, depth=1)
    torch.manual_seed(0)
    with pytest.warns(DeprecationWarning, match=r"use MRN\(upscale=...\)"):
        old = MRN([0.5, 1.0], fusion="transposed", width=2, depth=1)
    assert old.hparams == new.hparams
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values(), strict=True))
    with pytest.raises(ModelConfigError, match=r"takes no option \['fusion'\]"):
        create_model("mrn_bilinear", mpps=[0.5, 1.0], fusion="transposed")


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("vgg", {"mpps": [0.5]}, r"unknown model 'vgg'; choose one of \['unet', 'mrn_bilinear', 'mrn_transposed'\]"),
        ("unet", {"mpps": [0.5], "fuser": "gated"}, r"unet takes no option \['fuser'\]; it accepts \['mpps', "),
        ("mrn_bilinear", {"mpps": [0.5], "upscale": "transposed"}, r"fixes \{'upscale': 'bilinear'\}"),
        ("mrn_bilinear", {"mpps": [0.5], "widht": 2}, r"takes no option \['widht'\].*'width'"),
        ("unet", {"mpps": [0.5, 1.0]}, "one resolution"),
        ("unet", {"mpps": [0.5], "width": 0}, "width"),
        ("unet", {"mpps": [0.5], "depth": -1}, "depth"),
        ("unet", {"mpps": [0.5], "in_channels": True}, "in_channels"),
        ("mrn_bilinear", {"mpps": [0.5], "num_classes": 0}, "num_classes"),
        ("mrn_bilinear", {"mpps": "0.5"}, "sequence"),
    ],
)
def test_refused_configurations(name: str, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ModelConfigError, match=match):
        create_model(name, **kwargs)  # type: ignore[arg-type]


def test_checkpoint_with_an_unknown_option_is_a_checkpoint_error() -> None:
    model = create_model("unet", mpps=[0.5], width=2, depth=1)
    ckpt = make_checkpoint(model, InputSpec((0.5,), 8))
    bad = Checkpoint("unet", {**ckpt.model_kwargs, "fuser": "gated"}, ckpt.input_spec, ckpt.state_dict)
    with pytest.raises(CheckpointError, match=r"cannot be rebuilt: unet takes no option \['fuser'\]"):
        bad.build_model()


def test_old_checkpoint_kwargs_without_a_fuser_load() -> None:
    model = create_model("mrn_bilinear", mpps=[0.5, 1.0], width=2, depth=1)
    ckpt = make_checkpoint(model, InputSpec((0.5, 1.0), 8))
    old = {k: v for k, v in ckpt.model_kwargs.items() if k not in ("fuser", "upscale_init")}
    rebuilt = Checkpoint("mrn_bilinear", old, ckpt.input_spec, ckpt.state_dict).build_model()
    assert rebuilt.hparams == model.hparams


class TinyEncoder(Encoder):
    """A user's encoder: one strided conv per level (reductions 1, 2, 4) with its own channels."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.out_channels = [3, 5, 7]
        self.reductions = [1, 2, 4]
        ins = [in_channels, 3, 5]
        strides = [1, 2, 2]
        self.convs = nn.ModuleList(
            nn.Conv2d(i, o, 3, stride=s, padding=1) for i, o, s in zip(ins, self.out_channels, strides, strict=True)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for conv in self.convs:
            x = conv(x)
            features.append(x)
        return features


def test_a_users_encoder_and_architecture_plug_into_the_base() -> None:
    @register_model("test_tiny_unet")
    class TinyUNet(SegmentationModel):
        def __init__(self, mpps: list[float], num_classes: int = 1, in_channels: int = 3) -> None:
            super().__init__(
                "test_tiny_unet",
                mpps,
                encoder=partial(TinyEncoder, in_channels),
                num_classes=num_classes,
                options={"in_channels": in_channels},
            )

    try:
        model = create_model("test_tiny_unet", mpps=[1.0], num_classes=2)
        assert model.required_multiple == 4 and model.depth == 2
        assert model(patches(1, 12)).shape == (2, 2, 12, 12)
        assert create_model(**model.hparams).hparams == model.hparams
        with pytest.raises(ModelConfigError, match="takes one resolution"):
            create_model("test_tiny_unet", mpps=[1.0, 2.0])
    finally:
        del MODELS["test_tiny_unet"]


def test_register_model_checks_the_class() -> None:
    with pytest.raises(ModelConfigError, match="already registered"):
        register_model("unet")(MRN)
    with pytest.raises(ModelConfigError, match=r"no parameter\(s\) \['colour'\]"):
        register_model("test_colour", colour="red")(UNet)
    assert "test_colour" not in MODELS


def test_decoder_refuses_encoders_it_cannot_follow() -> None:
    class Strided(TinyEncoder):
        def __init__(self, in_channels: int) -> None:
            super().__init__(in_channels)
            self.reductions = [2, 4, 8]

    with pytest.raises(ModelConfigError, match=r"reductions 1, 2, 4, \.\.\., got \[2, 4, 8\]"):
        SegmentationModel("strided", [1.0], encoder=partial(Strided, 3), num_classes=1)
