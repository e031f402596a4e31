"""Encoders from timm backbones: any ``features_only`` model as one resolution branch.

``encoder="resnet34"`` (any timm model name, optionally with a pretrained tag such as
``"resnet34.a1_in1k"``) builds :class:`TimmEncoder`: the backbone's feature stages, finest first,
with their own channels and strides (``feature_info.channels()`` / ``.reduction()``). ``depth``
chooses the stages: those of stride at most ``2**depth`` (a ResNet's five stages have strides 2, 4,
8, 16, 32, so ``depth=5`` takes all and ``depth=3`` the first three; a ConvNeXt starts at stride 4).
The base model then fuses each stage with its own stride, and the
:class:`~mrseg.models.decoder.BackboneDecoder` goes back up to the input resolution.

timm is an optional dependency (``pip install "mrseg[timm]"``), imported only when a backbone is
built; ``import mrseg.models`` never imports it. The backbone is built with
``feature_cls="getter"`` (timm's ``forward_intermediates``), which prunes the layers after the
deepest used stage, so every parameter is used and the parameter names are those of the plain timm
model under ``backbone.model.`` (what :mod:`mrseg.models.pretrained` loads weights into).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import ModuleType

import torch
from torch import nn

from mrseg.core.errors import ModelConfigError
from mrseg.models.decoder import BackboneDecoder, Decoder, UNetDecoder, decoder_levels
from mrseg.models.encoder import Encoder, UNetEncoder
from mrseg.models.sizes import check_int

#: The paper's encoder (:class:`~mrseg.models.encoder.UNetEncoder`), the default of ``encoder=``.
DEFAULT_ENCODER = "unet"
#: Backbones tested with every architecture (J = 1..4, export, prediction, pretrained loading);
#: other timm models whose stages sit at consecutive strides work the same way.
BACKBONES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "convnext_tiny", "efficientnet_b0")
TIMM_HINT = (
    'pip install "mrseg[timm]" (timm needs torchvision; with a CPU-only torch install both from the CPU index '
    "first: pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu)"
)


def import_timm() -> ModuleType:
    """The ``timm`` module, or :class:`ModelConfigError` with the install hint.

    timm imports torchvision at import time; a torchvision built for another torch fails there
    with a ``RuntimeError``, reported the same way.
    """
    try:
        return importlib.import_module("timm")
    except Exception as error:  # ImportError, or torchvision's RuntimeError for a mismatched build
        raise ModelConfigError(f"timm backbones need timm ({type(error).__name__}: {error}); {TIMM_HINT}") from error


def timm_unavailable() -> str | None:
    """Why timm cannot be imported here (``None`` when it can): the reason tests skip with."""
    try:
        import_timm()
    except ModelConfigError as error:
        return str(error)
    return None


@dataclass(frozen=True)
class BackboneInfo:
    """What a timm backbone offers: every feature stage (finest first) and its expected input.

    Attributes
    ----------
    name
        The timm model name as given (may carry a pretrained tag).
    channels, reductions, modules
        Per stage: channels, stride (input pixels per map pixel), timm module name.
    mean, std
        Normalisation of RGB in [0, 1] the pretrained weights expect (timm's pretrained config).
    """

    name: str
    channels: tuple[int, ...]
    reductions: tuple[int, ...]
    modules: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def out_indices(self, depth: int) -> list[int]:
        """Indices of the stages of stride at most ``2**depth``; the deepest must be exactly ``2**depth``.

        Raises
        ------
        ModelConfigError
            No stage has stride ``2**depth``, or the chosen stages are not at consecutive strides.
        """
        chosen = [i for i, r in enumerate(self.reductions) if r <= 2**depth]
        if not chosen or self.reductions[chosen[-1]] != 2**depth:
            depths = [r.bit_length() - 1 for r in self.reductions]
            raise ModelConfigError(
                f"encoder {self.name!r} has stages at strides {list(self.reductions)}: depth {depth} (deepest stride "
                f"{2**depth}) selects none; choose depth in {depths}"
            )
        try:
            decoder_levels([self.reductions[i] for i in chosen])
        except ModelConfigError as error:
            raise ModelConfigError(f"encoder {self.name!r}: {error}") from None
        return chosen


@functools.lru_cache(maxsize=64)
def backbone_info(name: str) -> BackboneInfo:
    """Stages and normalisation of the timm model ``name`` (from a shape-only build; cached).

    Raises
    ------
    ModelConfigError
        timm is missing, or ``name`` is not a timm model with a ``features_only`` form.
    """
    timm = import_timm()
    try:
        with torch.device("meta"):
            features = timm.create_model(name, pretrained=False, features_only=True)
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception as error:  # timm raises RuntimeError / KeyError / TypeError for unknown or unfit models
        raise ModelConfigError(
            f"encoder {name!r} is neither 'unet' nor a timm model with feature stages ({error}); "
            f"timm.list_models() lists the names, e.g. {list(BACKBONES)}"
        ) from error
    info = features.feature_info
    mean = tuple(float(m) for m in getattr(cfg, "mean", None) or (0.485, 0.456, 0.406))
    std = tuple(float(s) for s in getattr(cfg, "std", None) or (0.229, 0.224, 0.225))
    return BackboneInfo(
        name, tuple(info.channels()), tuple(info.reduction()), tuple(info.module_name()), mean[:3], std[:3]
    )


class TimmEncoder(Encoder):
    """A timm backbone's feature stages of stride up to ``2**depth``, finest first.

    Parameters
    ----------
    name
        timm model name (``"resnet34"``, ``"convnext_tiny"``, ``"efficientnet_b0"``...).
    in_channels
        Image channels (timm's ``in_chans``).
    depth
        ``log2`` of the deepest stage's stride (:meth:`BackboneInfo.out_indices`).

    The weights are timm's random initialisation; :func:`mrseg.models.pretrained.load_pretrained`
    loads pretrained ones. :attr:`mean` / :attr:`std` are what those weights expect.
    """

    def __init__(self, name: str, in_channels: int, depth: int) -> None:
        super().__init__()
        check_int("in_channels", in_channels, 1)
        check_int("depth", depth, 1)
        info = backbone_info(name)
        self.name = name
        self.in_channels = in_channels
        self.out_indices = info.out_indices(depth)
        timm = import_timm()
        self.backbone = timm.create_model(
            name, pretrained=False, features_only=True, feature_cls="getter", out_indices=self.out_indices,
            in_chans=in_channels,
        )  # fmt: skip
        self.out_channels = [int(c) for c in self.backbone.feature_info.channels()]
        self.reductions = [int(r) for r in self.backbone.feature_info.reduction()]
        self.stage_modules = [f"model.{info.modules[i]}" for i in self.out_indices]
        self.mean, self.std = info.mean, info.std

    @property
    def model(self) -> nn.Module:
        """The (pruned) plain timm model: its state dict has the names of a timm checkpoint."""
        return self.backbone.model  # type: ignore[no-any-return]

    def stages(self) -> list[list[nn.Parameter]]:
        """Parameters per stage: those of modules up to the stage's module, after the previous one's."""
        order = {name: i for i, (name, _) in enumerate(self.backbone.named_modules())}
        ends = [max(i for n, i in order.items() if n == m or n.startswith(m + ".")) for m in self.stage_modules]
        stages: list[list[nn.Parameter]] = [[] for _ in ends]
        for name, parameter in self.backbone.named_parameters():
            owner = order[name.rpartition(".")[0]]
            stages[next((k for k, end in enumerate(ends) if owner <= end), len(ends) - 1)].append(parameter)
        return stages

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.backbone(x))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, strides={self.reductions}"


def encoder_parts(
    encoder: str, in_channels: int, width: int, depth: int
) -> tuple[Callable[[], Encoder], Callable[[list[int], list[int]], Decoder]]:
    """The encoder and decoder factories of ``encoder=`` for the base model.

    ``"unet"``: the paper's :class:`~mrseg.models.encoder.UNetEncoder` and
    :class:`~mrseg.models.decoder.UNetDecoder` (unchanged). A timm name: :class:`TimmEncoder` and a
    :class:`~mrseg.models.decoder.BackboneDecoder` of base width ``width``.
    """
    if encoder == DEFAULT_ENCODER:
        return partial(UNetEncoder, in_channels, width, depth), UNetDecoder
    if not isinstance(encoder, str) or not encoder:
        raise ModelConfigError(f"encoder must be 'unet' or a timm model name, got {encoder!r}")
    check_int("width", width, 1)
    return partial(TimmEncoder, encoder, in_channels, depth), partial(BackboneDecoder, width=width)


__all__ = [
    "BACKBONES",
    "DEFAULT_ENCODER",
    "TIMM_HINT",
    "BackboneInfo",
    "TimmEncoder",
    "backbone_info",
    "encoder_parts",
    "import_timm",
    "timm_unavailable",
]
