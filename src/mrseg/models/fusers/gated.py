"""A gated fuser: per-pixel softmax weights over the J branches (an attention over resolutions).

``w = softmax_j(conv1x1(cat(maps)))`` gives, at every pixel, one weight per branch summing to 1;
the output is ``BN(sum_j w_j * map_j)``. The gate is initialised to zero, so a new network starts
from the plain branch average and learns where context (coarse branches) or detail (branch 1)
matters. It adds only ``J * (J * channels + 1)`` parameters per level, against ``J * channels**2``
for the concat fuser.
"""

from __future__ import annotations

import torch
from torch import nn

from mrseg.models.fusers.base import Fuser, register_fuser


@register_fuser("gated")
class GatedFuser(Fuser):
    """``BN(sum_j softmax_j(gate(cat(maps)))_j * maps[j])`` with a 1x1-conv gate ``J * channels -> J``."""

    def __init__(self, channels: int, branches: int) -> None:
        super().__init__(channels, branches)
        self.gate = nn.Conv2d(channels * branches, branches, kernel_size=1)
        for parameter in self.gate.parameters():
            nn.init.zeros_(parameter)
        self.norm = nn.BatchNorm2d(channels)

    def weights(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Per-pixel branch weights ``(N, J, h, w)``, non-negative and summing to 1 over ``J``."""
        return torch.softmax(self.gate(torch.cat(maps, dim=1)), dim=1)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        weights = self.weights(maps).unsqueeze(2)  # (N, J, 1, h, w)
        return self.norm((weights * torch.stack(maps, dim=1)).sum(dim=1))
