"""Tests of mrseg.models.profile: FLOPs, activation and saved-tensor bytes, the meta-device copy."""

from __future__ import annotations

import pytest
import torch
from model_tester import MPPS_BY_J, patches
from torch.utils.flop_counter import FlopCounterMode

from mrseg.models import create_model
from mrseg.models.profile import count_flops, meta_copy, profile_model, saved_tensor_bytes

NAMES = ["unet", "mrn_bilinear", "mrn_transposed"]


@pytest.mark.parametrize("name", NAMES)
def test_flop_count_matches_torch_flop_counter(name: str) -> None:
    j = 1 if name == "unet" else 4
    model = create_model(name, mpps=MPPS_BY_J[j], width=2, depth=2).eval()
    x = patches(j, 32, n=1)
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


def test_meta_copy_keeps_the_fuser() -> None:
    model = create_model("mrn_bilinear", mpps=[0.5, 1.0], width=2, depth=1, fuser="concat")
    copy = meta_copy(model)
    assert copy.hparams == model.hparams and next(copy.parameters()).device.type == "meta"


def test_saved_tensor_bytes_leaves_model_unchanged() -> None:
    model = create_model("unet", mpps=[0.5], width=2, depth=1).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert saved_tensor_bytes(model, torch.randn(1, 3, 8, 8)) > 0
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
