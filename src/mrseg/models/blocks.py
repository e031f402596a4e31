"""Convolution units shared by encoders, decoder and fusion (Gu et al. 2018).

Every convolution is followed by batch norm (so convolutions carry no bias) and, except in the
fusers, by ReLU. Spatial sizes are pixels of the feature map the unit works on.
"""

from __future__ import annotations

from torch import nn


class ConvBNReLU(nn.Sequential):
    """3x3 convolution ('same' padding, no bias) -> batch norm -> ReLU; keeps the spatial size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Unit(nn.Sequential):
    """The paper's unit: two :class:`ConvBNReLU` layers; keeps the spatial size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(ConvBNReLU(in_channels, out_channels), ConvBNReLU(out_channels, out_channels))


class UpConvBNReLU(nn.Sequential):
    """Transposed convolution with kernel = stride = ``factor`` (no bias) -> batch norm -> ReLU.

    Multiplies the spatial size by ``factor`` with non-overlapping kernels (no checkerboard
    artefacts): the decoder's 2x up-sampling and the MRN's transposed upscaling by gamma.
    """

    def __init__(self, in_channels: int, out_channels: int, factor: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, kernel_size=factor, stride=factor, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
