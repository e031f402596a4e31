"""Tests of mrseg.models.fusers: the registry and a user's fuser."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mrseg.core.errors import ModelConfigError
from mrseg.models import create_model
from mrseg.models.fusers import FUSERS, Fuser, create_fuser, fuser_names, register_fuser
from mrseg.models.fusers.concat import ConcatFuser


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
