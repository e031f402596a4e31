"""The predictor: pre-processing -> model -> post-processing of a batch of tiles (MONAI's ``PatchInferer`` parts).

:class:`Predictor` turns ``uint8`` concentric patches into probabilities: pre-processing is the
model's input transform (:func:`mrseg.models.inputs.to_tensor`), post-processing the class rule
(:func:`mrseg.models.activation.foreground_probabilities`) and an area resampling to the map's
resolution. :func:`prepare_model` builds a checkpoint's network on a device with the fast
inference path below.

The inference engines (``engine``): ``"torch"`` (default): eval mode, batch norm folded into the
convolutions (:func:`mrseg.models.fold.fold_batch_norm`), channels-last weights and inputs,
inference mode, optional bf16; ``"compile"``: the same network through ``torch.compile`` (Inductor
with frozen weights; the first batch compiles, which takes a minute or more, and later batches are
padded to its size so nothing recompiles); ``"onnx"``: ONNX Runtime on the CPU
(:mod:`mrseg.inference.onnx_engine`).

Measured model-only on the idle 2-core development VM (AVX2), U-Net width 16 depth 4, 256 px, batch 8
(``benchmarks/engine_ceiling.py``; docs/performance.md): the torch engine is 1.02-1.10x the unfolded
network fed a channels-last input, ONNX Runtime 1.04-1.20x, TorchScript frozen 0.81-1.01x (not an
engine). bf16 autocast is 5-6x *slower* there; it pays only on CPUs with native bf16 (AVX512-BF16 /
AMX), at ~1e-3 absolute logit error, so it is opt-in (``precision="bf16"``, or ``"auto"`` to use it
only where it is native).

Usage::

    predict = prepare_for_inference(model)            # model is put in eval mode, batch norm folded
    logits = predict(x)                               # x float32 (N, J, 3, H, W) -> float32 (N, C, H, W)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from mrseg.core.device import native_bf16, resolve_device
from mrseg.core.errors import ConfigError
from mrseg.core.input_spec import InputSpec
from mrseg.core.label_spec import LabelSpec
from mrseg.inference.onnx_engine import onnx_predictor
from mrseg.inference.settings import ENGINES, PRECISIONS
from mrseg.models.activation import foreground_probabilities
from mrseg.models.checkpoint import Checkpoint
from mrseg.models.fold import fold_batch_norm
from mrseg.models.inputs import to_tensor

log = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "auto"]

#: A prepared model: float32 ``(N, J, 3, H, W)`` -> logits ``(N, C, H, W)`` (an ``nn.Module`` also fits).
ModelFn = Callable[[torch.Tensor], torch.Tensor]


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


class CompiledPredictor(InferencePredictor):
    """:class:`InferencePredictor` through ``torch.compile`` (Inductor, frozen weights).

    The first call compiles (:attr:`compile_s` seconds, reported by the benchmarks); a batch
    smaller than the first one is padded to its size, so a slide's last batch does not recompile.
    ``backend`` is ``torch.compile``'s (Inductor with frozen weights by default; ``"eager"`` only
    traces, for tests).
    """

    def __init__(
        self, model: nn.Module, precision: str, channels_last: bool, device: torch.device, backend: str = "inductor"
    ) -> None:
        super().__init__(model, precision, channels_last, device)
        options: dict[str, str | int | bool | Callable[..., Any]] | None = (
            {"freezing": True} if backend == "inductor" else None
        )
        self.compiled = torch.compile(model, backend=backend, options=options)
        self.compile_s: float | None = None
        self._batch: int | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if self._batch is not None and n < self._batch:
            x = torch.cat([x, x[:1].expand(self._batch - n, *x.shape[1:])])
        t0 = time.perf_counter()
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = to_channels_last(x)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.precision == "bf16" else nullcontext()
        with torch.inference_mode(), autocast:
            out = self.compiled(x)
        if self._batch is None:
            self._batch, self.compile_s = n, time.perf_counter() - t0
            log.info("torch.compile: first batch (compilation included) took %.1f s", self.compile_s)
        return out[:n].float().contiguous()


def prepare_for_inference(
    model: nn.Module,
    *,
    precision: Precision = "fp32",
    channels_last: bool = True,
    device: torch.device | str | None = None,
    fold: bool = True,
    compile_model: bool = False,
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
    fold
        Fold batch norms into the convolutions before them (:func:`~mrseg.models.fold.fold_batch_norm`;
        the model can no longer be trained afterwards).
    compile_model
        Run through ``torch.compile`` (:class:`CompiledPredictor`).

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
    if fold:
        fold_batch_norm(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    log.debug("inference path: %s, channels_last=%s, fold=%s, device=%s", resolved, channels_last, fold, device)
    cls = CompiledPredictor if compile_model else InferencePredictor
    return cls(model, resolved, channels_last, device)


def prepare_model(
    checkpoint: Checkpoint, device: str = "auto", precision: str = "fp32", engine: str = "torch"
) -> ModelFn:
    """Build the checkpoint's model on ``device`` (``auto``, ``cpu``, ``cuda:N``...) for inference with ``engine``.

    Raises
    ------
    ConfigError
        Unknown or unavailable device (:func:`mrseg.core.device.resolve_device`), unknown precision
        or engine, bf16 or a non-CPU device with the onnx engine, or the onnx engine's
        dependencies missing.
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; choose one of {list(ENGINES)}")
    resolved = resolve_device(device)
    if engine != "onnx":
        return prepare_for_inference(
            checkpoint.build_model(),
            precision=precision,  # type: ignore[arg-type]
            device=resolved,
            compile_model=engine == "compile",
        )
    if precision == "bf16":
        raise ConfigError("the onnx engine computes in fp32; use precision fp32 (or engine torch for bf16)")
    spec = checkpoint.input_spec
    channels = int(checkpoint.model_kwargs.get("in_channels", 3))
    return onnx_predictor(checkpoint.build_model(), (1, len(spec.mpps), channels, spec.size_px, spec.size_px), resolved)


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
        """``uint8 (N, J, S, S, 3)`` patches -> normalised float32 ``(N, J, 3, S, S)`` (the model's input transform).

        Laid out channels-last when the model says it wants that (``model.channels_last``), so no copy reorders it.
        """
        return to_tensor(patches, self.spec, channels_last=bool(getattr(self.model, "channels_last", False)))

    def predict(self, x: torch.Tensor) -> np.ndarray:
        """Model and post-processing: float32 ``(N, C - 1, s, s)`` class probabilities, ``s = out_size_px``."""
        with torch.inference_mode():
            prob = foreground_probabilities(self.model(x.to(self.device, non_blocking=True)), self.labels)
            if self.out_size_px != prob.shape[-1]:
                prob = torch.nn.functional.interpolate(prob, size=(self.out_size_px, self.out_size_px), mode="area")
            return prob.float().cpu().numpy()

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        return self.predict(self.preprocess(patches))
