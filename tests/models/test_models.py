"""Tests of mrseg.models: shapes, crop-and-upscale, fusion wiring, J=1 equivalence, refusals, profiling."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mrseg.core.errors import ModelConfigError
from mrseg.models import MRN, UNet, create_model, gammas_from_mpps, model_names, required_multiple, valid_sizes
from mrseg.models.blocks import CropUpscale, Fusion, center_crop
from mrseg.models.profile import count_flops, profile_model, saved_tensor_bytes
from mrseg.models.sizes import check_spatial

MPPS_BY_J = {1: [0.5], 2: [0.5, 2.0], 3: [0.5, 1.0, 2.0], 4: [0.5, 1.0, 2.0, 4.0]}
NAMES = ["unet", "mrn_bilinear", "mrn_transposed"]


def _input(j: int, size: int, n: int = 2, seed: int = 0, channels: int = 3) -> torch.Tensor:
    return torch.randn(n, j, channels, size, size, generator=torch.Generator().manual_seed(seed))


def _randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Give every batch norm non-trivial affine parameters and running statistics."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=g) * 0.1
            m.running_mean = torch.randn(m.num_features, generator=g) * 0.1
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5


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
        out = model(_input(j, size))
    assert out.shape == (2, classes, size, size)
    assert out.dtype == torch.float32
    assert size % model.required_multiple == 0


def test_rectangular_input() -> None:
    model = create_model("mrn_bilinear", mpps=[0.5, 1.0], width=2, depth=2).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 2, 3, 16, 24)).shape == (1, 1, 16, 24)


def test_unet_accepts_4d_and_5d_input() -> None:
    model = create_model("unet", mpps=[0.5], width=2, depth=2).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), model(x[:, None]))


def test_in_channels() -> None:
    model = create_model("mrn_transposed", mpps=[1.0, 2.0], width=2, depth=1, in_channels=1).eval()
    with torch.no_grad():
        assert model(_input(2, 8, channels=1)).shape == (2, 1, 8, 8)


def test_channel_widths_double_per_level() -> None:
    model = create_model("unet", mpps=[0.5], width=4, depth=3)
    convs = [m for m in model.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 4, 8, 8, 16, 16, 32, 32]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.bias is None for c in convs)
    ups = [m for m in model.decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert all(u.kernel_size == (2, 2) and u.stride == (2, 2) for u in ups)
    assert model.head.kernel_size == (1, 1) and model.head.out_channels == 1


# ------------------------------------------------------------------------------- crop and upscale
def test_center_crop_takes_the_centre() -> None:
    x = torch.arange(64.0).view(1, 1, 8, 8)
    crop = center_crop(x, 2)
    assert torch.equal(crop, x[..., 2:6, 2:6])
    crop4 = center_crop(x, 4)
    assert torch.equal(crop4, x[..., 3:5, 3:5])
    # a single marked centre block survives, the border is gone
    y = torch.zeros(1, 1, 16, 16)
    y[..., 6:10, 6:10] = 1.0
    assert center_crop(y, 4).sum() == 16 and center_crop(y, 4).min() == 1


def test_center_crop_odd_remainder_floors() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # crop of 1 px from 4: offset floor(3/2) = 1
    assert center_crop(x, 4).item() == x[0, 0, 1, 1].item()


def test_bilinear_upscale_of_constant_is_constant() -> None:
    up = CropUpscale(3, gamma=4, mode="bilinear")
    x = torch.full((2, 3, 16, 16), 2.5)
    out = up(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, x)


def test_bilinear_upscale_maps_centre_region() -> None:
    # left half 0, right half 1: the crop of the centre sees the edge, upscaled back it stays monotone
    x = torch.zeros(1, 1, 8, 8)
    x[..., :, 4:] = 1.0
    out = CropUpscale(1, gamma=2, mode="bilinear")(x)
    assert out.shape == (1, 1, 8, 8)
    row = out[0, 0, 0]
    assert torch.all(row[1:] >= row[:-1]) and row[0] == 0 and row[-1] == 1
    # only the cropped columns 2..5 influence the output: changing the border changes nothing
    x2 = x.clone()
    x2[..., :, :2] = 7.0
    torch.testing.assert_close(CropUpscale(1, gamma=2, mode="bilinear")(x2), out)


def test_transposed_upscale_shapes_and_locality() -> None:
    torch.manual_seed(0)
    up = CropUpscale(2, gamma=4, mode="transposed").eval()
    conv = up.up[0]  # type: ignore[index]
    assert isinstance(conv, nn.ConvTranspose2d) and conv.kernel_size == (4, 4) and conv.stride == (4, 4)
    x = torch.randn(1, 2, 16, 16)
    out = up(x)
    assert out.shape == x.shape
    x2 = x.clone()
    x2[..., :6, :] += 5.0  # outside the centre 4x4 crop (rows 6..9)
    torch.testing.assert_close(up(x2), out)


def test_crop_upscale_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="nearest"):
        CropUpscale(1, 2, "nearest")


def test_fusion_restores_channel_count_with_identity_activation() -> None:
    fusion = Fusion(4, [2, 4], "bilinear").eval()
    conv = fusion.fuse[0]
    assert isinstance(conv, nn.Conv2d) and conv.in_channels == 12 and conv.out_channels == 4
    assert conv.kernel_size == (1, 1)
    assert not any(isinstance(m, nn.ReLU) for m in fusion.fuse)
    out = fusion(torch.randn(1, 4, 8, 8), [torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)])
    assert out.shape == (1, 4, 8, 8) and (out < 0).any()


# --------------------------------------------------------------------------------------- wiring
@pytest.mark.parametrize("name", ["mrn_bilinear", "mrn_transposed"])
def test_gradients_reach_every_branch_first_conv(name: str) -> None:
    model = create_model(name, mpps=MPPS_BY_J[4], width=2, depth=2)
    model.train()
    model(_input(4, 32)).sum().backward()
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
    x = _input(2, 16)
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
    model(_input(j, 16, n=4, seed=1))  # update running stats
    model.eval()
    x = _input(j, 16, n=3, seed=2)
    with torch.no_grad():
        a, b = model(x), model(x)
        single = model(x[1:2])
    assert torch.equal(a, b)
    torch.testing.assert_close(a[1:2], single, rtol=1e-5, atol=1e-5)


def test_train_mode_uses_batch_statistics() -> None:
    model = create_model("unet", mpps=[0.5], width=2, depth=1).train()
    x = _input(1, 8, n=4)
    with torch.no_grad():
        full = model(x)
        part = model(x[:2])
    assert not torch.allclose(full[:2], part)


# --------------------------------------------------------------------------------- J=1 equivalence
@pytest.mark.parametrize("fusion", ["bilinear", "transposed"])
def test_mrn_with_one_branch_is_exactly_a_unet(fusion: str) -> None:
    torch.manual_seed(3)
    unet = create_model("unet", mpps=[0.5], width=3, depth=2)
    _randomize_bn(unet)
    mrn = create_model(f"mrn_{fusion}", mpps=[0.5], width=3, depth=2)
    assert isinstance(mrn, MRN) and isinstance(unet, UNet)
    unet_state, mrn_state = unet.state_dict(), mrn.state_dict()
    assert list(unet_state) == list(mrn_state)
    assert all(unet_state[k].shape == mrn_state[k].shape for k in unet_state)
    mrn.load_state_dict(unet_state, strict=True)
    unet.eval(), mrn.eval()
    x = _input(1, 16)
    with torch.no_grad():
        assert torch.equal(unet(x), mrn(x))
    assert not mrn.context_encoders and not mrn.fusions


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


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("vgg", {"mpps": [0.5]}, "unknown model"),
        ("unet", {"mpps": [0.5, 1.0]}, "one resolution"),
        ("unet", {"mpps": [0.5], "width": 0}, "width"),
        ("unet", {"mpps": [0.5], "depth": -1}, "depth"),
        ("mrn_bilinear", {"mpps": [0.5], "num_classes": 0}, "num_classes"),
        ("mrn_bilinear", {"mpps": "0.5"}, "sequence"),
    ],
)
def test_refused_configurations(name: str, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ModelConfigError, match=match):
        create_model(name, **kwargs)  # type: ignore[arg-type]


def test_refused_sizes_say_what_works() -> None:
    model = create_model("mrn_bilinear", mpps=[0.5, 1.0, 2.0, 4.0], width=2, depth=2)
    assert model.required_multiple == 32
    with pytest.raises(ModelConfigError, match=r"not a multiple of 32.*sizes that work: .*32.*64") as info:
        model(_input(4, 48, n=1))
    assert "48" in str(info.value)
    with pytest.raises(ModelConfigError, match="expects input"):
        model(_input(3, 32, n=1))
    unet = create_model("unet", mpps=[0.5], width=2, depth=3)
    with pytest.raises(ModelConfigError, match="multiple of 8"):
        unet(torch.randn(1, 3, 12, 12))
    with pytest.raises(ModelConfigError, match="one resolution"):
        unet(torch.randn(1, 2, 3, 16, 16))


def test_valid_sizes_helpers() -> None:
    assert required_multiple(4, [0.5, 1, 2, 4]) == 128
    assert required_multiple(4, [0.5]) == 16
    assert valid_sizes(128, 500) == [256, 384, 512, 640]
    assert valid_sizes(128, 512) == [256, 384, 512, 640]
    assert valid_sizes(64, 10) == [64, 128]
    check_spatial(torch.zeros(1, 3, 64, 128), 64, 2, [0.5, 2.0])


# ----------------------------------------------------------------------------------- hparams
@pytest.mark.parametrize("name", NAMES)
def test_hparams_round_trip(name: str) -> None:
    mpps = [0.5] if name == "unet" else [0.5, 2.0]
    model = create_model(name, mpps=mpps, num_classes=2, width=2, depth=1, in_channels=4)
    hp = model.hparams
    assert hp == {"name": name, "mpps": mpps, "num_classes": 2, "width": 2, "depth": 1, "in_channels": 4}
    assert all(type(v) in (str, int, list) for v in hp.values())
    rebuilt = create_model(**hp)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = _input(len(mpps), 8, channels=4)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), rebuilt.eval()(x))


def test_hparams_survive_checkpoint(tmp_path: object) -> None:
    from pathlib import Path

    from mrseg.core.input_spec import InputSpec
    from mrseg.models.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint

    model = create_model("mrn_transposed", mpps=(0.5, 1.0), width=2, depth=1).eval()
    path = save_checkpoint(Path(str(tmp_path)) / "m.pt", make_checkpoint(model, InputSpec((0.5, 1.0), 8)))
    rebuilt = load_checkpoint(path).build_model()
    x = _input(2, 8)
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))


def test_model_names() -> None:
    assert model_names() == NAMES


# ----------------------------------------------------------------------------------- profiling
@pytest.mark.parametrize("name", NAMES)
def test_flop_count_matches_torch_flop_counter(name: str) -> None:
    j = 1 if name == "unet" else 4
    model = create_model(name, mpps=MPPS_BY_J[j], width=2, depth=2).eval()
    x = _input(j, 32, n=1)
    flops, activation = count_flops(model, x)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    assert flops == counter.get_total_flops()
    assert activation > 0


def test_unet_flops_by_hand() -> None:
    # depth 0: one unit (3->2, 2->2 3x3 convs) and a 1x1 head 2->1 on an 8x8 image
    model = create_model("unet", mpps=[0.5], width=2, depth=0)
    flops, _ = count_flops(model, torch.zeros(1, 3, 8, 8))
    assert flops == 2 * 64 * (2 * 3 * 9 + 2 * 2 * 9 + 1 * 2)


def test_profile_model_and_memory_grows_with_j() -> None:
    saved = []
    for j in (1, 2, 3):
        name = "unet" if j == 1 else "mrn_bilinear"
        model = create_model(name, mpps=MPPS_BY_J[j], width=2, depth=2)
        profile = profile_model(model, 32)
        assert profile.input_shape == (1, j, 3, 32, 32) and profile.output_shape == (1, 1, 32, 32)
        assert profile.params == sum(p.numel() for p in model.parameters())
        saved.append(profile.saved_bytes)
    assert saved[0] < saved[1] < saved[2]


def test_saved_tensor_bytes_leaves_model_unchanged() -> None:
    model = create_model("unet", mpps=[0.5], width=2, depth=1).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert saved_tensor_bytes(model, torch.randn(1, 3, 8, 8)) > 0
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_directly_built_models_record_hparams() -> None:
    assert UNet([0.5], width=2, depth=1).hparams["name"] == "unet"
    mrn = MRN([0.5, 1.0], fusion="transposed", width=2, depth=1)
    assert mrn.hparams == create_model("mrn_transposed", mpps=[0.5, 1.0], width=2, depth=1).hparams


# ------------------------------------------------------------------------------- inference path
def test_prepare_for_inference_fp32_matches_eager() -> None:
    from mrseg.inference.predictor import prepare_for_inference

    torch.manual_seed(0)
    model = create_model("mrn_bilinear", mpps=[0.5, 1.0], width=4, depth=2)
    _randomize_bn(model)
    x = _input(2, 16, n=3)
    with torch.no_grad():
        expected = model.eval()(x)
    predict = prepare_for_inference(model)
    assert predict.precision == "fp32" and predict.channels_last and not predict.model.training
    out = predict(x)
    assert out.dtype == torch.float32 and out.is_contiguous()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_prepare_for_inference_bf16_is_close() -> None:
    from mrseg.inference.predictor import native_bf16, prepare_for_inference

    torch.manual_seed(0)
    model = create_model("unet", mpps=[0.5], width=4, depth=1).eval()
    x = _input(1, 16, n=2)
    with torch.no_grad():
        expected = model(x)
    predict = prepare_for_inference(model, precision="bf16", channels_last=False)
    out = predict(x)
    assert predict.precision == "bf16" and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=0.05, rtol=0.05)
    auto = prepare_for_inference(model, precision="auto")
    assert auto.precision == ("bf16" if native_bf16() else "fp32")


def test_prepare_for_inference_rejects_unknown_precision() -> None:
    from mrseg.core.errors import ConfigError
    from mrseg.inference.predictor import prepare_for_inference

    with pytest.raises(ConfigError, match="fp16"):
        prepare_for_inference(create_model("unet", mpps=[0.5], width=2, depth=1), precision="fp16")  # type: ignore[arg-type]


def test_to_channels_last_slices_are_channels_last() -> None:
    from mrseg.inference.predictor import to_channels_last

    t = torch.randn(2, 3, 3, 8, 8)
    x = to_channels_last(t)
    assert torch.equal(x, t)
    assert x[:, 1].stride() == (3 * 8 * 8 * 3, 1, 8 * 3, 3)  # channels fastest within each branch slice
    assert to_channels_last(torch.randn(2, 3, 8, 8)).is_contiguous(memory_format=torch.channels_last)
