"""Multi-Resolution Networks (MRN, Gu et al. 2018): J encoders, per-level fusion, one U-Net decoder.

Design choice (the paper's Fig. 2): every encoder runs on its own patch independently; the fusion
at each level only *produces the skip* for the decoder (and the fused bottleneck feeds the decoder).
Branch 1's encoder therefore continues down with its own, unfused map. With J = 1 there is nothing
to fuse and the network is exactly :class:`mrseg.models.unet.UNet` (same parameter names).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mrseg.core.errors import ModelConfigError
from mrseg.models.blocks import Decoder, Encoder, Fusion, SegmentationModel, level_channels
from mrseg.models.sizes import check_spatial, gammas_from_mpps, required_multiple
from mrseg.models.unet import check_hparams

FUSIONS = ("bilinear", "transposed")


class MRN(SegmentationModel):
    """Multi-resolution network over concentric patches ordered finest first.

    Parameters
    ----------
    mpps
        Microns per pixel of the J patches, ascending; ``mpp_j / mpp_1`` must be powers of two.
    fusion
        How the cropped coarse maps are upscaled: ``"bilinear"`` (no parameters, align_corners=False)
        or ``"transposed"`` (transposed conv with kernel = stride = gamma, then BN + ReLU).
    num_classes, width, depth, in_channels
        As for :class:`mrseg.models.unet.UNet`.

    Attributes
    ----------
    encoder
        Branch 1 (finest patch), named as in the U-Net.
    context_encoders
        Branches 2..J (separate weights, same structure).
    fusions
        One :class:`Fusion` per encoder level and the bottleneck (empty when J = 1).

    Input ``(N, J, in_channels, H, W)``; output logits ``(N, num_classes, H, W)`` for the finest patch.
    ``H`` and ``W`` must be multiples of :attr:`required_multiple` ``= 2**depth * max(gamma)``.
    """

    def __init__(
        self,
        mpps: Sequence[float],
        fusion: str = "bilinear",
        num_classes: int = 1,
        width: int = 32,
        depth: int = 4,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        check_hparams(num_classes=num_classes, width=width, depth=depth, in_channels=in_channels)
        if fusion not in FUSIONS:
            raise ModelConfigError(f"unknown fusion {fusion!r}; choose one of {list(FUSIONS)}")
        self.mpps = [float(m) for m in mpps]
        self.gammas = gammas_from_mpps(self.mpps)
        self.fusion = fusion
        self.depth = depth
        self.required_multiple = required_multiple(depth, self.mpps)
        self.encoder = Encoder(in_channels, width, depth)
        self.context_encoders = nn.ModuleList(Encoder(in_channels, width, depth) for _ in self.gammas[1:])
        if len(self.gammas) > 1:
            self.fusions = nn.ModuleList(Fusion(c, self.gammas[1:], fusion) for c in level_channels(width, depth))
        else:
            self.fusions = nn.ModuleList()
        self.decoder = Decoder(width, depth)
        self.head = nn.Conv2d(width, num_classes, kernel_size=1)
        self.hparams: dict[str, Any] = {
            "name": f"mrn_{fusion}",
            "mpps": list(self.mpps),
            "num_classes": num_classes,
            "width": width,
            "depth": depth,
            "in_channels": in_channels,
        }

    @property
    def num_branches(self) -> int:
        """J, the number of resolutions."""
        return len(self.gammas)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing() and (x.ndim != 5 or x.shape[1] != self.num_branches):
            raise ModelConfigError(
                f"MRN over mpps {self.mpps} expects input (N, {self.num_branches}, C, H, W), got {tuple(x.shape)}"
            )
        check_spatial(x, self.required_multiple, self.depth, self.mpps)
        features = self.encoder(x[:, 0])
        if self.num_branches > 1:
            context = [enc(x[:, j + 1]) for j, enc in enumerate(self.context_encoders)]
            features = [
                fuse(own, [branch[level] for branch in context])
                for level, (fuse, own) in enumerate(zip(self.fusions, features, strict=True))
            ]
        return self.head(self.decoder(features))
