"""Tests of mrseg.models: shapes, branch wiring, J=1 equivalence, refused resolutions and sizes, inference path."""

from __future__ import annotations

import pytest
import torch
from model_tester import MPPS_BY_J, patches, randomize_bn
from torch import nn

from mrseg.core.device import native_bf16
from mrseg.core.errors import ConfigError, ModelConfigError
from mrseg.inference.predictor import prepare_for_inference, to_channels_last
from mrseg.models import MRN, UNet, create_model, gammas_from_mpps, required_multiple, valid_sizes
from mrseg.models.fold import fold_batch_norm
from mrseg.models.sizes import check_spatial

NAMES = ["unet", "mrn_bilinear", "mrn_transposed"]


# --------------------------------------------------------------------------------------------- shapes
SHAPE_GRID = [
    # (J, depth, width, size, C); sizes are multiples of 2**depth * max gamma
    (1, 1, 2, 8, 1),
    (1, 3, 4, 16, 3),
    (2, 1, 2, 16, 1),
    (2, 2, 4, 32, 2),
    (3, 2, 2, 16, 1),
    (3, 1, 4, 24, 4),
    (4, 2, 2, 32, 1),
    (4, 1, 3, 16, 2),
    (4, 0, 2, 8, 1),
]


@pytest.mark.parametrize(
    ("name", "j", "depth", "width", "size", "classes"),
    [(name, *g) for name in NAMES for g in SHAPE_GRID if name != "unet" or g[0] == 1],
)
def test_output_shapes(name: str, j: int, depth: int, width: int, size: int, classes: int) -> None:
    model = create_model(name, mpps=MPPS_BY_J[j], num_classes=classes, width=width, depth=depth).eval()
    with torch.no_grad():
        out = model(patches(j, size))
    assert out.shape == (2, classes, size, size)
    assert out.dtype == torch.float32
    assert size % model.required_multiple == 0


def test_rectangularpatches() -> None:
    model = create_model("mrn_bilinear", mpps=[0.5, 1.0], width=2, depth=2).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 2, 3, 16, 24)).shape == (1, 1, 16, 24)


def test_unet_accepts_4d_and_5dpatches() -> None:
    model = create_model("unet", mpps=[0.5], width=2, depth=2).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), model(x[:, None]))


def test_in_channels() -> None:
    model = create_model("mrn_transposed", mpps=[1.0, 2.0], width=2, depth=1, in_channels=1).eval()
    with torch.no_grad():
        assert model(patches(2, 8, channels=1)).shape == (2, 1, 8, 8)


def test_channel_widths_double_per_level() -> None:
    model = create_model("unet", mpps=[0.5], width=4, depth=3)
    convs = [m for m in model.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 4, 8, 8, 16, 16, 32, 32]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.bias is None for c in convs)
    ups = [m for m in model.decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert all(u.kernel_size == (2, 2) and u.stride == (2, 2) for u in ups)
    assert model.head.kernel_size == (1, 1) and model.head.out_channels == 1


# --------------------------------------------------------------------------------------- wiring
@pytest.mark.parametrize("name", ["mrn_bilinear", "mrn_transposed"])
def test_gradients_reach_every_branch_first_conv(name: str) -> None:
    model = create_model(name, mpps=MPPS_BY_J[4], width=2, depth=2)
    model.train()
    model(patches(4, 32)).sum().backward()
    encoders = [model.encoder, *model.context_encoders]
    assert len(encoders) == 4
    for encoder in encoders:
        first = encoder.units[0][0][0]
        assert isinstance(first, nn.Conv2d)
        assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0


def test_branches_have_separate_weights() -> None:
    model = create_model("mrn_bilinear", mpps=MPPS_BY_J[3], width=2, depth=1)
    ptrs = {enc.units[0][0][0].weight.data_ptr() for enc in [model.encoder, *model.context_encoders]}
    assert len(ptrs) == 3


def test_coarse_branch_changes_output() -> None:
    torch.manual_seed(0)
    model = create_model("mrn_bilinear", mpps=[0.5, 1.0], width=2, depth=1).eval()
    x = patches(2, 16)
    x2 = x.clone()
    x2[:, 1, :, 6:10, 6:10] += 3.0  # the centre of the coarse patch
    with torch.no_grad():
        out, out2 = model(x), model(x2)
    assert not torch.allclose(out, out2)
    assert out.shape == (2, 1, 16, 16)


@pytest.mark.parametrize("name", NAMES)
def test_eval_mode_is_deterministic_and_batch_independent(name: str) -> None:
    j = 1 if name == "unet" else 3
    model = create_model(name, mpps=MPPS_BY_J[j], width=3, depth=2)
    model.train()
    model(patches(j, 16, n=4, seed=1))  # update running stats
    model.eval()
    x = patches(j, 16, n=3, seed=2)
    with torch.no_grad():
        a, b = model(x), model(x)
        single = model(x[1:2])
    assert torch.equal(a, b)
    torch.testing.assert_close(a[1:2], single, rtol=1e-5, atol=1e-5)


def test_train_mode_uses_batch_statistics() -> None:
    model = create_model("unet", mpps=[0.5], width=2, depth=1).train()
    x = patches(1, 8, n=4)
    with torch.no_grad():
        full = model(x)
        part = model(x[:2])
    assert not torch.allclose(full[:2], part)


# --------------------------------------------------------------------------------- J=1 equivalence
@pytest.mark.parametrize("upscale", ["bilinear", "transposed"])
def test_mrn_with_one_branch_is_exactly_a_unet(upscale: str) -> None:
    torch.manual_seed(3)
    unet = create_model("unet", mpps=[0.5], width=3, depth=2)
    randomize_bn(unet)
    mrn = create_model(f"mrn_{upscale}", mpps=[0.5], width=3, depth=2)
    assert isinstance(mrn, MRN) and isinstance(unet, UNet)
    unet_state, mrn_state = unet.state_dict(), mrn.state_dict()
    assert list(unet_state) == list(mrn_state)
    assert all(unet_state[k].shape == mrn_state[k].shape for k in unet_state)
    mrn.load_state_dict(unet_state, strict=True)
    unet.eval(), mrn.eval()
    x = patches(1, 16)
    with torch.no_grad():
        assert torch.equal(unet(x), mrn(x))
    assert not mrn.context_encoders and not mrn.fusions
    with torch.no_grad():  # a one-branch MRN also takes (N, C, H, W), as the U-Net does
        assert torch.equal(mrn(x[:, 0]), mrn(x))


# --------------------------------------------------------------------------------------- refusals
def test_gammas_from_mpps() -> None:
    assert gammas_from_mpps([0.5, 1, 2, 4]) == [1, 2, 4, 8]
    assert gammas_from_mpps([0.5, 2.0]) == [1, 4]
    assert gammas_from_mpps([0.2425, 0.485]) == [1, 2]  # scanner-rounded mpps


@pytest.mark.parametrize(
    ("mpps", "match"),
    [
        ([0.5, 1.5], "not a power of two"),
        ([0.5, 1.0, 3.0], "octave-spaced"),
        ([1.0, 0.5], "ascending"),
        ([], "empty"),
        ([0.0, 1.0], "positive"),
    ],
)
def test_refused_mpps(mpps: list[float], match: str) -> None:
    with pytest.raises(ModelConfigError, match=match):
        create_model("mrn_bilinear", mpps=mpps, width=2, depth=1)


def test_refused_sizes_say_what_works() -> None:
    model = create_model("mrn_bilinear", mpps=[0.5, 1.0, 2.0, 4.0], width=2, depth=2)
    assert model.required_multiple == 32
    with pytest.raises(ModelConfigError, match=r"not a multiple of 32.*sizes that work: .*32.*64") as info:
        model(patches(4, 48, n=1))
    assert "48" in str(info.value)
    with pytest.raises(ModelConfigError, match="expects input"):
        model(patches(3, 32, n=1))
    unet = create_model("unet", mpps=[0.5], width=2, depth=3)
    with pytest.raises(ModelConfigError, match="multiple of 8"):
        unet(torch.randn(1, 3, 12, 12))
    with pytest.raises(
        ModelConfigError, match=r"unet over mpps \[0.5\] expects input \(N, 1, C, H, W\) or \(N, C, H, W\)"
    ):
        unet(torch.randn(1, 2, 3, 16, 16))


def test_valid_sizes_helpers() -> None:
    assert required_multiple(4, [0.5, 1, 2, 4]) == 128
    assert required_multiple(4, [0.5]) == 16
    assert valid_sizes(128, 500) == [256, 384, 512, 640]
    assert valid_sizes(128, 512) == [256, 384, 512, 640]
    assert valid_sizes(64, 10) == [64, 128]
    check_spatial(torch.zeros(1, 3, 64, 128), 64, 2, [0.5, 2.0])


# ------------------------------------------------------------------------------- inference path
def test_prepare_for_inference_fp32_matches_eager() -> None:
    torch.manual_seed(0)
    model = create_model("mrn_bilinear", mpps=[0.5, 1.0], width=4, depth=2)
    randomize_bn(model)
    x = patches(2, 16, n=3)
    with torch.no_grad():
        expected = model.eval()(x)
    predict = prepare_for_inference(model)
    assert predict.precision == "fp32" and predict.channels_last and not predict.model.training
    out = predict(x)
    assert out.dtype == torch.float32 and out.is_contiguous()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_prepare_for_inference_bf16_is_close() -> None:
    torch.manual_seed(0)
    model = create_model("unet", mpps=[0.5], width=4, depth=1).eval()
    x = patches(1, 16, n=2)
    with torch.no_grad():
        expected = model(x)
    predict = prepare_for_inference(model, precision="bf16", channels_last=False)
    out = predict(x)
    assert predict.precision == "bf16" and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=0.05, rtol=0.05)
    auto = prepare_for_inference(model, precision="auto")
    assert auto.precision == ("bf16" if native_bf16() else "fp32")


def test_prepare_for_inference_rejects_unknown_precision() -> None:
    with pytest.raises(ConfigError, match="fp16"):
        prepare_for_inference(create_model("unet", mpps=[0.5], width=2, depth=1), precision="fp16")  # type: ignore[arg-type]


def test_to_channels_last_slices_are_channels_last() -> None:
    t = torch.randn(2, 3, 3, 8, 8)
    x = to_channels_last(t)
    assert torch.equal(x, t)
    assert x[:, 1].stride() == (3 * 8 * 8 * 3, 1, 8 * 3, 3)  # channels fastest within each branch slice
    assert to_channels_last(torch.randn(2, 3, 8, 8)).is_contiguous(memory_format=torch.channels_last)


def test_batch_norm_folding_needs_eval_mode_and_keeps_unfoldable_norms() -> None:
    model = create_model("mrn_bilinear", mpps=MPPS_BY_J[2], width=2, depth=1, fuser="gated")
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norm(model)
    randomize_bn(model)
    model.eval()
    assert fold_batch_norm(model) > 0
    # the gated fuser's batch norm follows a weighted sum, not a convolution: kept
    assert [type(m.fuse.norm) for m in model.fusions] == [nn.BatchNorm2d] * len(model.fusions)
