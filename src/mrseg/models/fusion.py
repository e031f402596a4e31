"""MRN fusion of one feature level: crop and upscale the coarse branches, then a pluggable fuser.

At a level whose maps are ``h x w`` pixels, branch ``j`` (``mpp_j = gamma_j * mpp_1``) sees
``gamma_j`` times the field of view of branch 1; its central ``1/gamma_j`` covers the tissue of the
finest patch. :class:`CropUpscale` takes that centre and brings it back to ``h x w``;
the fuser (:mod:`mrseg.models.fusers`) combines the J aligned maps into one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mrseg.core.errors import ModelConfigError
from mrseg.models.blocks import UpConvBNReLU
from mrseg.models.fusers import DEFAULT_FUSER, create_fuser

#: Ways to upscale a cropped coarse map (the MRN's ``upscale`` option).
UPSCALES = ("bilinear", "transposed")
#: Starting weights of the learned (transposed) upscaling (the MRN's ``upscale_init`` option):
#: ``"random"`` is PyTorch's default initialisation; ``"nearest"`` starts as nearest-neighbour
#: upscaling, each output channel a copy of its own input channel (the FCN practice of starting a
#: learned upsampler as a fixed interpolation, Long et al. 2015).
UPSCALE_INITS = ("random", "nearest")


def check_upscale(upscale: str) -> None:
    """Raise :class:`ModelConfigError` unless ``upscale`` is one of :data:`UPSCALES`."""
    if upscale not in UPSCALES:
        raise ModelConfigError(f"unknown upscale {upscale!r}; choose one of {list(UPSCALES)}")


def check_upscale_init(upscale: str, init: str) -> None:
    """Raise :class:`ModelConfigError` unless ``init`` is one of :data:`UPSCALE_INITS` and fits ``upscale``."""
    if init not in UPSCALE_INITS:
        raise ModelConfigError(f"unknown upscale_init {init!r}; choose one of {list(UPSCALE_INITS)}")
    if upscale != "transposed" and init != "random":
        raise ModelConfigError(f"upscale_init {init!r} needs learned upscaling (upscale='transposed'), not {upscale!r}")


def init_nearest(layer: nn.ConvTranspose2d) -> None:
    """Set a square transposed convolution with kernel = stride to nearest-neighbour upscaling.

    Output channel ``c`` becomes input channel ``c`` repeated over each ``k x k`` block (identity
    across channels, ones over the kernel); needs as many output as input channels.
    """
    c_in, c_out = layer.in_channels, layer.out_channels
    if c_in != c_out or layer.kernel_size != layer.stride or layer.groups != 1:
        raise ModelConfigError(
            f"nearest initialisation needs in = out channels and kernel = stride, got {c_in}->{c_out}, "
            f"kernel {layer.kernel_size}, stride {layer.stride}"
        )
    with torch.no_grad():
        layer.weight.zero_()
        index = torch.arange(c_in)
        layer.weight[index, index] = 1.0
        if layer.bias is not None:
            layer.bias.zero_()


def center_crop(x: torch.Tensor, gamma: int) -> torch.Tensor:
    """Centre crop of a ``(N, C, h, w)`` map to ``floor(h / gamma) x floor(w / gamma)``.

    The crop starts at ``floor((h - hc) / 2)`` (likewise for x): when ``h - hc`` is odd the crop sits
    half a pixel towards the top-left of the exact centre.
    """
    h, w = x.shape[-2], x.shape[-1]
    hc, wc = h // gamma, w // gamma
    top, left = (h - hc) // 2, (w - wc) // 2
    return x[..., top : top + hc, left : left + wc]


class CropUpscale(nn.Module):
    """Centre-crop a coarse branch's map by ``gamma`` and upscale it back by ``gamma``.

    Parameters
    ----------
    channels
        Channels of the map (unchanged).
    gamma
        Ratio ``mpp_j / mpp_1`` (a power of two); the central ``1/gamma`` of the coarse patch covers
        the same tissue as the whole finest patch.
    mode
        ``"bilinear"``: ``F.interpolate(..., mode="bilinear", align_corners=False)``, no parameters.
        ``"transposed"``: :class:`~mrseg.models.blocks.UpConvBNReLU` with kernel = stride = ``gamma``
        (the decoder's up-sampling layer, generalised to ratio ``gamma``).
    init
        Starting weights of the transposed convolution, one of :data:`UPSCALE_INITS`
        (``"random"`` for bilinear, which has none).
    """

    def __init__(self, channels: int, gamma: int, mode: str, init: str = "random") -> None:
        super().__init__()
        check_upscale(mode)
        check_upscale_init(mode, init)
        self.gamma = int(gamma)
        self.mode = mode
        self.init = init
        self.up: UpConvBNReLU | None = None
        if mode == "transposed":
            self.up = UpConvBNReLU(channels, channels, self.gamma)
            conv = self.up[0]
            if init == "nearest" and isinstance(conv, nn.ConvTranspose2d):
                init_nearest(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        crop = center_crop(x, self.gamma)
        if self.up is not None:
            return self.up(crop)
        if self.gamma == 1:
            return crop
        return F.interpolate(crop, scale_factor=float(self.gamma), mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        init = f", init={self.init!r}" if self.up is not None else ""
        return f"gamma={self.gamma}, mode={self.mode!r}{init}"


class Fusion(nn.Module):
    """Fuse one level of J branches: crop+upscale branches ``2..J``, then the fuser over all J maps.

    Parameters
    ----------
    channels
        Channels of every branch's map at this level (and of the result).
    gammas
        ``gamma_j`` of branches ``2..J``.
    upscale
        One of :data:`UPSCALES`.
    upscale_init
        One of :data:`UPSCALE_INITS` (learned upscaling only).
    fuser
        A registered fuser name (:func:`mrseg.models.fusers.fuser_names`); the default
        (``"concat"``: concatenate, 1x1 conv, BN, identity activation) keeps the decoder's shapes.
    """

    def __init__(
        self,
        channels: int,
        gammas: Sequence[int],
        upscale: str = "bilinear",
        fuser: str = DEFAULT_FUSER,
        upscale_init: str = "random",
    ) -> None:
        super().__init__()
        self.upscale = nn.ModuleList(CropUpscale(channels, g, upscale, upscale_init) for g in gammas)
        self.fuse = create_fuser(fuser, channels, len(gammas) + 1)

    def forward(self, finest: torch.Tensor, coarser: list[torch.Tensor]) -> torch.Tensor:
        maps = [finest] + [up(x) for up, x in zip(self.upscale, coarser, strict=True)]
        return self.fuse(maps)
