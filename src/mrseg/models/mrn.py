"""Multi-Resolution Networks (MRN, Gu et al. 2018): J encoders, per-level fusion, one U-Net decoder.

Design choice (the paper's Fig. 2): every encoder runs on its own patch independently; the fusion
at each level only *produces the skip* for the decoder (and the fused bottleneck feeds the decoder).
Branch 1's encoder therefore continues down with its own, unfused map. With J = 1 there is nothing
to fuse and the network is exactly :class:`mrseg.models.unet.UNet` (same parameter names).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import partial
from typing import ClassVar

from mrseg.models.backbones import DEFAULT_ENCODER, encoder_parts
from mrseg.models.base import SegmentationModel
from mrseg.models.fusers import DEFAULT_FUSER, fuser_class
from mrseg.models.fusion import Fusion, check_upscale, check_upscale_init
from mrseg.models.registry import register_model


@register_model("mrn_transposed", upscale="transposed")
@register_model("mrn_bilinear", upscale="bilinear")
class MRN(SegmentationModel):
    """Multi-resolution network over concentric patches ordered finest first.

    Parameters
    ----------
    mpps
        Microns per pixel of the J patches, ascending; ``mpp_j / mpp_1`` must be powers of two.
    upscale
        How the cropped coarse maps are upscaled: ``"bilinear"`` (no parameters, align_corners=False)
        or ``"transposed"`` (transposed conv with kernel = stride = gamma, then BN + ReLU). The
        registry names ``mrn_bilinear`` and ``mrn_transposed`` fix it.
    upscale_init
        Starting weights of the transposed upscaling (:data:`mrseg.models.fusion.UPSCALE_INITS`):
        ``"random"`` (PyTorch's default) or ``"nearest"`` (starts as nearest-neighbour upscaling,
        identity across channels); only ``"random"`` with ``upscale="bilinear"``.
    num_classes, width, depth, in_channels, encoder, freeze
        As for :class:`mrseg.models.unet.UNet`; with a backbone ``encoder``, the crop-and-upscale
        fusion runs at each of its stages with that stage's stride.
    branch_weights
        ``"separate"`` (the paper: one encoder per resolution), ``"shared"`` (one encoder for every
        branch) or ``"shared_convs"`` (shared convolutions, per-branch normalisation);
        :mod:`mrseg.models.sharing`.
    fuser
        How each level's J aligned maps are combined (:func:`mrseg.models.fusers.fuser_names`):
        ``"concat"`` (the paper's: concatenate, 1x1 conv, BN) or ``"gated"`` (per-pixel softmax
        weights over the branches).
    fusion
        Deprecated spelling of ``upscale`` (warns).

    Attributes
    ----------
    encoder
        Branch 1 (finest patch), named as in the U-Net.
    context_encoders
        Branches 2..J (same structure; empty when ``branch_weights="shared"``).
    fusions
        One :class:`~mrseg.models.fusion.Fusion` per encoder level and the bottleneck (empty when J = 1).

    Input ``(N, J, in_channels, H, W)``; output logits ``(N, num_classes, H, W)`` for the finest patch.
    ``H`` and ``W`` must be multiples of :attr:`required_multiple` ``= 2**depth * max(gamma)``
    (the deepest stage's stride times the largest crop factor).
    """

    #: Old option name -> new one; accepted with a DeprecationWarning, not offered by ``create_model``.
    deprecated_options: ClassVar[dict[str, str]] = {"fusion": "upscale"}

    def __init__(
        self,
        mpps: Sequence[float],
        upscale: str = "bilinear",
        num_classes: int = 1,
        width: int = 32,
        depth: int = 4,
        in_channels: int = 3,
        *,
        fuser: str = DEFAULT_FUSER,
        upscale_init: str = "random",
        encoder: str = DEFAULT_ENCODER,
        branch_weights: str = "separate",
        freeze: Sequence[str] = (),
        fusion: str | None = None,
    ) -> None:
        if fusion is not None:
            warnings.warn("MRN(fusion=...) names the upscaling; use MRN(upscale=...)", DeprecationWarning, stacklevel=2)
            upscale = fusion
        check_upscale(upscale)
        check_upscale_init(upscale, upscale_init)
        fuser_class(fuser)
        make_encoder, make_decoder = encoder_parts(encoder, in_channels, width, depth)
        super().__init__(
            f"mrn_{upscale}",
            mpps,
            encoder=make_encoder,
            num_classes=num_classes,
            fusion=partial(Fusion, upscale=upscale, fuser=fuser, upscale_init=upscale_init),
            decoder=make_decoder,
            branch_weights=branch_weights,
            freeze=freeze,
            options={
                "width": width,
                "depth": depth,
                "in_channels": in_channels,
                "fuser": fuser,
                "upscale_init": upscale_init,
                "encoder": encoder,
                "branch_weights": branch_weights,
                "freeze": list(freeze),
            },
        )
        self.upscale = upscale
        self.upscale_init = upscale_init
        self.fuser = fuser
