"""The base of every network: J encoders -> fusion -> decoder -> head, the input check and the record.

As in segmentation_models_pytorch's ``base/model.py``, the base class owns ``forward``; an
architecture only chooses its parts. For J concentric patches (finest mpp first):

1. one encoder per branch (separate weights; or one shared encoder, :mod:`.sharing`) maps patch ``j``
   to feature maps, finest first;
2. with J > 1, one fusion per feature level crops and upscales branches 2..J to branch 1's field of
   view and fuses them with branch 1's map (the fused maps are the decoder's skips; branch 1's encoder
   itself runs unfused, as in the paper's Fig. 2); with J = 1 branch 1's maps pass through;
3. the decoder goes from the deepest map to the finest;
4. a 1x1 convolution (the head) gives the logits.

The parts are built in that order under fixed names (``encoder``, ``context_encoders.{j}``,
``fusions.{level}``, ``decoder``, ``head``), so a seed fixes the initial weights, checkpoints of
earlier versions load, and a U-Net is exactly an MRN with one branch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mrseg.core.errors import ModelConfigError
from mrseg.models.decoder import Decoder, UNetDecoder
from mrseg.models.encoder import Encoder
from mrseg.models.freeze import freeze_encoders, frozen_norms
from mrseg.models.sharing import check_branch_weights, tie_except_norms
from mrseg.models.sizes import check_int, check_spatial, gammas_from_mpps

#: Builds one branch's encoder (called J times, branch 1 first).
EncoderFactory = Callable[[], Encoder]
#: Builds one level's fusion from (channels of the level, gammas of branches 2..J).
FusionFactory = Callable[[int, list[int]], nn.Module]
#: Builds the decoder from the encoder's (out_channels, reductions).
DecoderFactory = Callable[[list[int], list[int]], Decoder]


class SegmentationModel(nn.Module):
    """Maps ``(N, J, C, H, W)`` float patches, finest mpp first, to logits ``(N, num_classes, H, W)``.

    Parameters
    ----------
    name
        The registry name recorded in :attr:`hparams`.
    mpps
        Microns per pixel of the J patches, ascending; ``mpp_j / mpp_1`` must be powers of two.
    encoder
        Builds one branch's :class:`~mrseg.models.encoder.Encoder`.
    num_classes
        Logit channels (1 for binary with sigmoid, > 1 for softmax).
    fusion
        Builds one level's fusion (``module(finest, [coarser...]) -> map``); needed when J > 1.
    decoder
        Builds the decoder (default :class:`~mrseg.models.decoder.UNetDecoder`).
    branch_weights
        ``"separate"`` (one encoder per branch), ``"shared"`` (one encoder for all) or
        ``"shared_convs"`` (per-branch normalisation layers), see :mod:`mrseg.models.sharing`.
    freeze
        Selectors of encoder parts to freeze (:mod:`mrseg.models.freeze`).
    options
        The other hyper-parameters to record (whatever ``create_model(name, ...)`` takes).

    Attributes
    ----------
    hparams
        ``{"name", "mpps", "num_classes", **options}`` in plain Python types:
        ``create_model(**model.hparams)`` rebuilds the architecture; checkpoints store it.
    mpps, gammas
        Input resolutions (microns per pixel) and their ratios ``mpp_j / mpp_1``.
    depth
        ``log2`` of the deepest feature map's reduction (pooling levels for the U-Net encoder).
    min_depth
        ``log2`` of the finest feature map's reduction (0 for the U-Net encoder, 1 for a ResNet).
    required_multiple
        Input height and width (pixels) must be multiples of it: deepest reduction ``* max(gamma)``.
    """

    def __init__(
        self,
        name: str,
        mpps: Sequence[float],
        *,
        encoder: EncoderFactory,
        num_classes: int,
        fusion: FusionFactory | None = None,
        decoder: DecoderFactory = UNetDecoder,
        branch_weights: str = "separate",
        freeze: Sequence[str] = (),
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes, 1)
        self.mpps = [float(m) for m in mpps]
        self.gammas = gammas_from_mpps(self.mpps)
        self.hparams: dict[str, Any] = {"name": name, "mpps": list(self.mpps), "num_classes": num_classes}
        self.hparams.update(options or {})
        if fusion is None and len(self.gammas) > 1:
            raise ModelConfigError(f"{name} takes one resolution, got mpps {self.mpps}")
        check_branch_weights(branch_weights)
        self.branch_weights = branch_weights
        self.encoder = encoder()
        self.context_encoders = nn.ModuleList(encoder() for _ in self.gammas[1:] if branch_weights != "shared")
        if branch_weights == "shared_convs":
            for context in self.context_encoders:
                tie_except_norms(self.encoder, context)
        channels, reductions = list(self.encoder.out_channels), list(self.encoder.reductions)
        self.fusions = nn.ModuleList()
        if fusion is not None and len(self.gammas) > 1:
            self.fusions.extend(fusion(c, self.gammas[1:]) for c in channels)
        self.decoder = decoder(channels, reductions)
        self.head = nn.Conv2d(self.decoder.out_channels, num_classes, kernel_size=1)
        deepest = max(reductions)
        self.depth = int(math.log2(deepest))
        self.min_depth = int(math.log2(min(reductions)))
        self.required_multiple = deepest * max(self.gammas)
        freeze_encoders(self.encoders(), freeze, separate=branch_weights == "separate")

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)`` of the input the encoders' weights expect (RGB scaled to [0, 1])."""
        return tuple(self.encoder.mean), tuple(self.encoder.std)

    def train(self, mode: bool = True) -> SegmentationModel:
        """As :meth:`torch.nn.Module.train`, but batch norms of frozen stages stay in eval mode."""
        super().train(mode)
        for norm in frozen_norms(self) if mode else ():
            norm.eval()
        return self

    @property
    def name(self) -> str:
        """The registry name."""
        return str(self.hparams["name"])

    @property
    def num_branches(self) -> int:
        """J, the number of resolutions."""
        return len(self.gammas)

    def encoders(self) -> list[Encoder]:
        """The J encoders, branch 1 (finest) first (the same module J times when shared)."""
        if self.branch_weights == "shared":
            return [self.encoder] * self.num_branches
        return [self.encoder, *self.context_encoders]

    def check_input_shape(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as ``(N, J, C, H, W)``; with J = 1 a ``(N, C, H, W)`` tensor is taken as the one branch.

        Raises
        ------
        ModelConfigError
            Wrong number of dimensions or branches, or H / W not a multiple of
            :attr:`required_multiple` (the message lists sizes that work). Skipped while tracing.
        """
        if x.ndim == 4 and self.num_branches == 1:
            x = x[:, None]
        if not torch.jit.is_tracing() and (x.ndim != 5 or x.shape[1] != self.num_branches):
            one = " or (N, C, H, W)" if self.num_branches == 1 else ""
            raise ModelConfigError(
                f"{self.name} over mpps {self.mpps} expects input (N, {self.num_branches}, C, H, W){one}, "
                f"got {tuple(x.shape)}"
            )
        check_spatial(x, self.required_multiple, self.depth, self.mpps, min_depth=self.min_depth)
        return x

    def fuse(self, branches: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        """Per level, branch 1's map fused with the other branches' maps (J = 1: branch 1's maps)."""
        finest, *context = branches
        if not context:
            return finest
        return [
            fusion(own, [branch[level] for branch in context])
            for level, (fusion, own) in enumerate(zip(self.fusions, finest, strict=True))
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.check_input_shape(x)
        branches = [encoder(x[:, j]) for j, encoder in enumerate(self.encoders())]
        return self.head(self.decoder(self.fuse(branches)))
