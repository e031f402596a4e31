"""The paper's fuser: concatenate the J maps, 1x1 convolution back to one map's channels, BN."""

from __future__ import annotations

import torch
from torch import nn

from mrseg.models.fusers.base import Fuser, register_fuser


@register_fuser("concat")
class ConcatFuser(Fuser, nn.Sequential):
    """``BN(conv1x1(cat(maps)))``: ``J * channels -> channels``, no bias, identity activation.

    It is an :class:`~torch.nn.Sequential` (conv ``0``, batch norm ``1``) so that its parameters
    keep the names of every earlier mrseg checkpoint (``fusions.{level}.fuse.0.weight``, ...).
    """

    def __init__(self, channels: int, branches: int) -> None:
        super().__init__(channels, branches)
        self.append(nn.Conv2d(channels * branches, channels, kernel_size=1, bias=False))
        self.append(nn.BatchNorm2d(channels))

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(maps, dim=1)
        for layer in self:
            x = layer(x)
        return x
