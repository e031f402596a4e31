"""Encoders: the interface the base model needs, and the paper's built-in U-Net encoder.

An encoder maps one branch's patch ``(N, in_channels, H, W)`` to a list of feature maps, finest
first. The base model (:class:`mrseg.models.base.SegmentationModel`) reads only
:attr:`Encoder.out_channels` and :attr:`Encoder.reductions`, so any backbone that reports them (for
example a timm ``features_only`` model: ``feature_info.channels()`` and ``feature_info.reduction()``,
:class:`mrseg.models.backbones.TimmEncoder`) plugs in without changing the base; :meth:`Encoder.stages`
lets chosen stages be frozen (:mod:`mrseg.models.freeze`).
"""

from __future__ import annotations

import torch
from torch import nn

from mrseg.core.errors import ModelConfigError
from mrseg.core.input_spec import DEFAULT_MEAN, DEFAULT_STD
from mrseg.models.blocks import Unit
from mrseg.models.sizes import check_int


class Encoder(nn.Module):
    """Interface of an encoder: one per resolution branch.

    Attributes
    ----------
    out_channels
        Channels of each feature map ``forward`` returns, finest first.
    reductions
        Downsampling factor of each feature map relative to the input (pixels of the input per
        pixel of the map), finest first: map ``l`` is ``H / reductions[l]`` x ``W / reductions[l]``.
        The last map is the deepest (the bottleneck of a U-Net).
    mean, std
        Per-channel normalisation of RGB values scaled to [0, 1] that the encoder's weights expect
        (what a pretrained backbone was trained with; mrseg's defaults for an encoder trained from scratch).
    """

    out_channels: list[int]
    reductions: list[int]
    mean: tuple[float, ...] = DEFAULT_MEAN
    std: tuple[float, ...] = DEFAULT_STD

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - interface
        raise NotImplementedError

    def stages(self) -> list[list[nn.Parameter]]:
        """The parameters that compute each feature map from the previous one (map 0: from the input).

        Only freezing (:mod:`mrseg.models.freeze`) needs it; an encoder without it cannot be frozen by stage.
        """
        raise ModelConfigError(f"{type(self).__name__} does not list its stages (Encoder.stages): cannot freeze them")


def level_channels(width: int, depth: int) -> list[int]:
    """Channels of encoder levels ``0..depth-1`` and of the bottleneck (last entry): ``width * 2**l``."""
    return [width * 2**level for level in range(depth + 1)]


class UNetEncoder(Encoder):
    """The paper's encoder: ``depth`` units, each followed by 2x2 max pooling, then a bottleneck unit.

    ``forward`` returns the ``depth + 1`` feature maps *before* pooling: level ``l`` has
    ``width * 2**l`` channels at ``H / 2**l`` x ``W / 2**l``; the last one is the bottleneck.
    The input size must be divisible by ``2**depth``.

    Raises
    ------
    ModelConfigError
        ``in_channels`` or ``width`` below 1, or ``depth`` below 0.
    """

    def __init__(self, in_channels: int, width: int, depth: int) -> None:
        super().__init__()
        check_int("width", width, 1)
        check_int("in_channels", in_channels, 1)
        check_int("depth", depth, 0)
        channels = level_channels(width, depth)
        self.out_channels = channels
        self.reductions = [2**level for level in range(depth + 1)]
        ins = [in_channels, *channels[:-1]]
        self.units = nn.ModuleList(Unit(i, o) for i, o in zip(ins, channels, strict=True))
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

    def stages(self) -> list[list[nn.Parameter]]:
        """Stage ``l`` is unit ``l`` (pooling has no parameters)."""
        return [list(unit.parameters()) for unit in self.units]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features: list[torch.Tensor] = []
        for index, unit in enumerate(self.units):
            if index > 0:
                x = self.pool(x)
            x = unit(x)
            features.append(x)
        return features
