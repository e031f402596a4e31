"""Tests of mrseg.models.fusers: the registry, a user's fuser, and the gated fuser (the worked example)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mrseg.core.errors import ModelConfigError
from mrseg.models import create_model
from mrseg.models.fusers import FUSERS, Fuser, create_fuser, fuser_names, register_fuser
from mrseg.models.fusers.concat import ConcatFuser
from mrseg.models.fusers.gated import GatedFuser


def _maps(branches: int, channels: int = 3, size: int = 4, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, channels, size, size, generator=g) for _ in range(branches)]


def test_built_in_fusers_are_registered_default_first() -> None:
    assert fuser_names()[:1] == ["concat"]


@pytest.mark.parametrize("name", fuser_names())
@pytest.mark.parametrize("branches", [2, 4])
def test_every_fuser_keeps_the_shape(name: str, branches: int) -> None:
    fuser = create_fuser(name, 3, branches).eval()
    assert isinstance(fuser, Fuser) and (fuser.channels, fuser.branches) == (3, branches)
    assert fuser(_maps(branches)).shape == (2, 3, 4, 4)


def test_gated_fuser_starts_as_the_branch_mean() -> None:
    fuser = GatedFuser(3, 3).eval()  # fresh BN: y = x / sqrt(1 + eps)
    maps = _maps(3)
    weights = fuser.weights(maps)
    assert weights.shape == (2, 3, 4, 4)
    torch.testing.assert_close(weights, torch.full_like(weights, 1 / 3))
    expected = torch.stack(maps).mean(dim=0) / (1 + fuser.norm.eps) ** 0.5
    torch.testing.assert_close(fuser(maps), expected)


def test_gated_fuser_weights_each_pixel() -> None:
    fuser = GatedFuser(2, 2).eval()
    with torch.no_grad():
        fuser.gate.bias.copy_(torch.tensor([-20.0, 20.0]))  # all weight on branch 2
    maps = _maps(2, channels=2)
    torch.testing.assert_close(fuser(maps), maps[1] / (1 + fuser.norm.eps) ** 0.5)
    with torch.no_grad():  # branch 1 where its first channel is positive, else branch 2
        fuser.gate.bias.zero_()
        fuser.gate.weight.zero_()
        fuser.gate.weight[0, 0] = 50.0
    w = fuser.weights(maps)
    assert torch.all(torch.sum(w, dim=1).sub(1).abs() < 1e-6)
    assert torch.equal(w[:, 0] > 0.5, maps[0][:, 0] > 0)


def test_gated_fuser_learns_its_gate() -> None:
    fuser = GatedFuser(2, 3).train()
    fuser(_maps(3, channels=2)).square().sum().backward()
    assert fuser.gate.weight.grad is not None and fuser.gate.weight.grad.abs().sum() > 0


def test_mrn_with_the_gated_fuser_has_one_per_level() -> None:
    model = create_model("mrn_bilinear", mpps=[0.5, 1.0, 2.0], width=2, depth=2, fuser="gated")
    assert model.hparams["fuser"] == "gated"
    assert [type(f.fuse) for f in model.fusions] == [GatedFuser] * 3  # levels 0, 1 and the bottleneck
    assert [f.fuse.channels for f in model.fusions] == [2, 4, 8]


def test_a_users_fuser_is_selectable_by_name() -> None:
    @register_fuser("test_max")
    class MaxFuser(Fuser):
        def __init__(self, channels: int, branches: int) -> None:
            super().__init__(channels, branches)
            self.norm = nn.BatchNorm2d(channels)

        def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
            return self.norm(torch.stack(maps).amax(dim=0))

    try:
        model = create_model("mrn_transposed", mpps=[0.5, 1.0], width=2, depth=1, fuser="test_max")
        assert isinstance(model.fusions[0].fuse, MaxFuser)
        assert model(torch.randn(1, 2, 3, 8, 8)).shape == (1, 1, 8, 8)
        with pytest.raises(ModelConfigError, match="already registered"):
            register_fuser("test_max")(ConcatFuser)
    finally:
        del FUSERS["test_max"]


def test_unknown_fuser_lists_the_choices() -> None:
    with pytest.raises(ModelConfigError, match=r"unknown fuser 'attention'; choose one of \['concat'"):
        create_model("mrn_bilinear", mpps=[0.5, 1.0], width=2, depth=1, fuser="attention")
