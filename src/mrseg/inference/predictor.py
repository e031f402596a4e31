"""The predictor: pre-processing -> model -> post-processing of a batch of tiles (MONAI's ``PatchInferer`` parts).

:class:`Predictor` turns ``uint8`` concentric patches into probabilities: pre-processing is the
model's input transform (:func:`mrseg.models.inputs.to_tensor`), post-processing the class rule
(:func:`mrseg.models.activation.foreground_probabilities`) and an area resampling to the map's
resolution. :func:`prepare_model` builds a checkpoint's network on a device with the fast
inference path below.

The fast inference path: eval mode, channels-last memory layout, inference mode, optional bf16.

Measured with ``benchmarks/models.py`` (see docs/models.md): channels-last layout with
``torch.inference_mode`` is the fp32 default (1.2-1.4x over NCHW eager on a 2-core CPU); bf16
autocast with channels-last is about 1.9-2.8x faster on CPUs with native bf16 (AVX512-BF16 / AMX),
at the cost of ~1e-3 absolute logit error, so it is opt-in (``precision="bf16"``, or ``"auto"`` to
use it only where it is native). ``torch.compile`` is not used: 0.96-1.29x over channels-last eager
after 45-60 s of compilation per input shape.

Usage::

    predict = prepare_for_inference(model)            # model is put in eval mode
    logits = predict(x)                               # x float32 (N, J, 3, H, W) -> float32 (N, C, H, W)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from typing import Literal

import numpy as np
import torch
from torch import nn

from mrseg.core.device import resolve_device
from mrseg.core.errors import ConfigError
from mrseg.core.input_spec import InputSpec
from mrseg.core.label_spec import LabelSpec
from mrseg.inference.settings import PRECISIONS
from mrseg.models.activation import foreground_probabilities
from mrseg.models.checkpoint import Checkpoint
from mrseg.models.inputs import to_tensor

log = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "auto"]

#: A prepared model: float32 ``(N, J, 3, H, W)`` -> logits ``(N, C, H, W)`` (an ``nn.Module`` also fits).
ModelFn = Callable[[torch.Tensor], torch.Tensor]


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """True when ``device`` computes bf16 convolutions natively (CUDA with bf16, or CPU with AVX512-BF16/AMX)."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """Lay out ``(N, C, H, W)`` or ``(N, J, C, H, W)`` with channels fastest (slices ``x[:, j]`` are channels-last)."""
    if x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    if x.ndim == 5:  # layout (N, J, H, W, C): every branch slice is a channels-last 4-D tensor
        return x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    return x


class InferencePredictor:
    """Callable wrapping a model for inference: ``predictor(x) -> float32 logits``.

    Attributes
    ----------
    model
        The wrapped network (eval mode, possibly channels-last).
    precision
        The resolved precision, ``"fp32"`` or ``"bf16"``.
    channels_last
        Whether inputs and weights use the channels-last layout.
    """

    def __init__(self, model: nn.Module, precision: str, channels_last: bool, device: torch.device) -> None:
        self.model = model
        self.precision = precision
        self.channels_last = channels_last
        self.device = device

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = to_channels_last(x)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.precision == "bf16" else nullcontext()
        with torch.inference_mode(), autocast:
            out = self.model(x)
        return out.float().contiguous()


def prepare_for_inference(
    model: nn.Module,
    *,
    precision: Precision = "fp32",
    channels_last: bool = True,
    device: torch.device | str | None = None,
) -> InferencePredictor:
    """Put ``model`` in eval mode on ``device`` with the fastest measured layout and return a predictor.

    Parameters
    ----------
    model
        A registry network (modified in place: eval mode, moved, channels-last weights).
    precision
        ``"fp32"`` (default, exact), ``"bf16"`` (autocast), or ``"auto"`` (bf16 only where native).
    channels_last
        Use the channels-last memory layout for weights and inputs (faster with oneDNN and cuDNN).
    device
        Where to run; default: where the model's parameters are.

    Returns
    -------
    InferencePredictor
        ``predictor(x)`` maps float32 ``(N, J, C, H, W)`` to float32 logits ``(N, classes, H, W)``.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {list(PRECISIONS)}")
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    resolved = "bf16" if precision == "bf16" or (precision == "auto" and native_bf16(device)) else "fp32"
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    log.debug("inference path: %s, channels_last=%s, device=%s", resolved, channels_last, device)
    return InferencePredictor(model, resolved, channels_last, device)


def prepare_model(checkpoint: Checkpoint, device: str = "auto", precision: str = "fp32") -> InferencePredictor:
    """Build the checkpoint's model on ``device`` (``auto``, ``cpu``, ``cuda:N``...) for inference.

    Raises
    ------
    ConfigError
        Unknown or unavailable device (:func:`mrseg.core.device.resolve_device`), unknown precision.
    """
    return prepare_for_inference(
        checkpoint.build_model(),
        precision=precision,  # type: ignore[arg-type]
        device=resolve_device(device),
    )


class Predictor:
    """One batch of tiles through pre-processing, the model and post-processing.

    Parameters
    ----------
    model
        Float32 ``(N, J, 3, S, S)`` -> logits ``(N, outputs, S, S)`` (:func:`prepare_model`, or any module).
    spec
        The checkpoint's input spec (normalisation of the patches).
    labels
        The checkpoint's label spec (the class rule).
    out_size_px
        Edge of the output tiles in map pixels (``S`` at the model's finest mpp; smaller for a coarser map).
    device
        Where the inputs go (the model's device).
    """

    def __init__(
        self, model: ModelFn, spec: InputSpec, labels: LabelSpec, out_size_px: int, device: torch.device | str = "cpu"
    ) -> None:
        self.model, self.spec, self.labels = model, spec, labels
        self.out_size_px = int(out_size_px)
        self.device = torch.device(device)

    @property
    def channels(self) -> int:
        """Output channels: one probability per foreground class (``C - 1``)."""
        return self.labels.num_classes - 1

    def preprocess(self, patches: np.ndarray) -> torch.Tensor:
        """``uint8 (N, J, S, S, 3)`` patches -> normalised float32 ``(N, J, 3, S, S)`` (the model's input transform)."""
        return to_tensor(patches, self.spec)

    def predict(self, x: torch.Tensor) -> np.ndarray:
        """Model and post-processing: float32 ``(N, C - 1, s, s)`` class probabilities, ``s = out_size_px``."""
        with torch.inference_mode():
            prob = foreground_probabilities(self.model(x.to(self.device, non_blocking=True)), self.labels)
            if self.out_size_px != prob.shape[-1]:
                prob = torch.nn.functional.interpolate(prob, size=(self.out_size_px, self.out_size_px), mode="area")
            return prob.float().cpu().numpy()

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        return self.predict(self.preprocess(patches))
