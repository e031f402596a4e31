"""The parts of the backbone work that need no timm: backbone decoder, shared branch weights, freezing, sizes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from model_tester import MPPS_BY_J, patches
from torch import nn

from mrseg.core.errors import ModelConfigError
from mrseg.models import create_model
from mrseg.models.backbones import timm_unavailable
from mrseg.models.decoder import BackboneDecoder, UNetDecoder
from mrseg.models.profile import count_params


def maps(channels: list[int], reductions: list[int], size: int = 32) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(1, c, size // r, size // r, generator=g) for c, r in zip(channels, reductions, strict=True)]


def test_backbone_decoder_over_unet_strides_is_the_unet_decoder() -> None:
    torch.manual_seed(0)
    unet = UNetDecoder([4, 8, 16], [1, 2, 4])
    torch.manual_seed(0)
    backbone = BackboneDecoder([4, 8, 16], [1, 2, 4], width=4)
    assert list(unet.state_dict()) == list(backbone.state_dict())
    backbone.load_state_dict(unet.state_dict())
    features = maps([4, 8, 16], [1, 2, 4])
    with torch.no_grad():
        assert torch.equal(unet.eval()(features), backbone.eval()(features))


@pytest.mark.parametrize(("reductions", "skipless"), [([2, 4, 8], 1), ([4, 8, 16, 32], 2)])
def test_backbone_decoder_adds_skipless_levels_down_to_stride_1(reductions: list[int], skipless: int) -> None:
    channels = [6 * (k + 1) for k in range(len(reductions))]
    decoder = BackboneDecoder(channels, reductions, width=3)
    assert len(decoder.blocks) == reductions[-1].bit_length() - 1  # one up-step per factor of two
    assert decoder(maps(channels, reductions)).shape == (1, 3, 32, 32)
    # levels finer than the first map take no skip: their unit sees only the up-sampled channels
    for level in range(skipless):
        assert decoder.blocks[level].unit[0][0].in_channels == 3 * 2**level
    assert decoder.blocks[skipless].unit[0][0].in_channels == 3 * 2**skipless + channels[0]


@pytest.mark.parametrize("reductions", [[2, 8], [3, 6], [4, 4], [1]])
def test_backbone_decoder_refuses_gaps(reductions: list[int]) -> None:
    with pytest.raises(ModelConfigError, match=r"consecutive powers of two|coarser than the input"):
        BackboneDecoder([4] * len(reductions), reductions, width=2)


@pytest.mark.parametrize("j", [2, 3, 4])
def test_shared_branch_weights_count_the_encoder_once(j: int) -> None:
    mpps = MPPS_BY_J[j]
    separate = create_model("mrn_bilinear", mpps=mpps, width=2, depth=2)
    shared = create_model("mrn_bilinear", mpps=mpps, width=2, depth=2, branch_weights="shared")
    convs = create_model("mrn_bilinear", mpps=mpps, width=2, depth=2, branch_weights="shared_convs")
    encoder = count_params(shared.encoder)
    assert count_params(separate) - count_params(shared) == (j - 1) * encoder
    norms = sum(p.numel() for m in shared.encoder.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    assert count_params(convs) == count_params(shared) + (j - 1) * norms
    assert len(shared.encoders()) == j and len(shared.context_encoders) == 0
    convs_encoders = convs.encoders()
    assert convs_encoders[1].units[0][0][0].weight is convs_encoders[0].units[0][0][0].weight
    assert convs_encoders[1].units[0][0][1].weight is not convs_encoders[0].units[0][0][1].weight


def test_shared_branches_train_and_rebuild() -> None:
    model = create_model("mrn_bilinear", mpps=MPPS_BY_J[3], width=2, depth=2, branch_weights="shared_convs")
    model(patches(3, 16)).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    rebuilt = create_model(**model.hparams)
    rebuilt.load_state_dict(model.state_dict())
    x = patches(3, 16)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), rebuilt.eval()(x))
    with pytest.raises(ModelConfigError, match="unknown branch_weights 'tied'"):
        create_model("mrn_bilinear", mpps=[0.5, 1.0], width=2, depth=1, branch_weights="tied")


def test_freeze_stages_and_branches() -> None:
    model = create_model("mrn_bilinear", mpps=MPPS_BY_J[3], width=2, depth=2, freeze=["stage0", "branch3.stage2"])
    assert model.hparams["freeze"] == ["stage0", "branch3.stage2"]
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {
        *(n for n, _ in model.named_parameters() if ".units.0." in n and n.startswith(("encoder.", "context_"))),
        *(n for n, _ in model.named_parameters() if n.startswith("context_encoders.1.units.2.")),
    }
    model.train()
    norm = model.encoder.units[0][0][1]
    assert not norm.training and model.encoder.units[1][0][1].training  # frozen BN keeps its statistics
    model(patches(3, 16)).mean().backward()
    assert all(p.grad is None for n, p in model.named_parameters() if n in frozen)
    whole = create_model("unet", mpps=[0.5], width=2, depth=2, freeze=["encoder"])
    assert all(not p.requires_grad for p in whole.encoder.parameters())
    assert all(p.requires_grad for p in whole.decoder.parameters())


@pytest.mark.parametrize(
    ("freeze", "match"),
    [
        (["stage9"], r"stages 0\.\.2"),
        (["branch4"], r"branches 1\.\.3"),
        (["layer1"], "not a selector"),
        ("stage0", "a list of selectors"),
    ],
)
def test_freeze_refusals(freeze: object, match: str) -> None:
    with pytest.raises(ModelConfigError, match=match):
        create_model("mrn_bilinear", mpps=MPPS_BY_J[3], width=2, depth=2, freeze=freeze)


def test_freezing_one_branch_of_shared_weights_is_refused() -> None:
    with pytest.raises(ModelConfigError, match="needs branch_weights='separate'"):
        create_model("mrn_bilinear", mpps=[0.5, 1.0], width=2, depth=1, branch_weights="shared", freeze=["branch2"])


def test_refused_size_names_a_shallower_depth() -> None:
    model = create_model("mrn_bilinear", mpps=MPPS_BY_J[4], width=2, depth=3)
    with pytest.raises(ModelConfigError, match=r"not a multiple of 64.*or keep 32 px with depth <= 2"):
        model(patches(4, 32, n=1))


def test_import_mrseg_models_does_not_import_timm() -> None:
    code = "import sys, mrseg.models, mrseg.models.pretrained; assert 'timm' not in sys.modules, 'timm imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(timm_unavailable() is None, reason="timm is importable here")
def test_backbone_without_timm_says_how_to_install() -> None:
    with pytest.raises(ModelConfigError, match=r"timm backbones need timm .*pip install \"mrseg\[timm\]\""):
        create_model("unet", mpps=[0.5], encoder="resnet18", depth=3)
