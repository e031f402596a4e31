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


def check_upscale(upscale: str) -> None:
    """Raise :class:`ModelConfigError` unless ``upscale`` is one of :data:`UPSCALES`."""
    if upscale not in UPSCALES:
        raise ModelConfigError(f"unknown upscale {upscale!r}; choose one of {list(UPSCALES)}")


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
    """

    def __init__(self, channels: int, gamma: int, mode: str) -> None:
        super().__init__()
        check_upscale(mode)
        self.gamma = int(gamma)
        self.mode = mode
        self.up: nn.Module | None = UpConvBNReLU(channels, channels, self.gamma) if mode == "transposed" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        crop = center_crop(x, self.gamma)
        if self.up is not None:
            return self.up(crop)
        if self.gamma == 1:
            return crop
        return F.interpolate(crop, scale_factor=float(self.gamma), mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, mode={self.mode!r}"


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
    fuser
        A registered fuser name (:func:`mrseg.models.fusers.fuser_names`); the default
        (``"concat"``: concatenate, 1x1 conv, BN, identity activation) keeps the decoder's shapes.
    """

    def __init__(
        self, channels: int, gammas: Sequence[int], upscale: str = "bilinear", fuser: str = DEFAULT_FUSER
    ) -> None:
        super().__init__()
        self.upscale = nn.ModuleList(CropUpscale(channels, g, upscale) for g in gammas)
        self.fuse = create_fuser(fuser, channels, len(gammas) + 1)

    def forward(self, finest: torch.Tensor, coarser: list[torch.Tensor]) -> torch.Tensor:
        maps = [finest] + [up(x) for up, x in zip(self.upscale, coarser, strict=True)]
        return self.fuse(maps)
