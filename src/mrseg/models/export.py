"""Export a checkpoint's network to ONNX or TorchScript, verified against PyTorch before it is kept.

The exported graph takes float32 ``(N, J, in_channels, H, W)`` patches (named ``patches``;
``H = W = size_px`` of the checkpoint's input spec, fixed; ``N`` dynamic) and returns logits
``(N, C, H, W)`` (named ``logits``). Normalisation is *not* part of the graph: apply
:meth:`mrseg.core.input_spec.InputSpec.to_tensor`'s mean/std (stored in the checkpoint) before calling it.

The file is written to a temporary name beside ``out``, loaded back with its own runtime
(onnxruntime or ``torch.jit.load``), compared with the PyTorch model on seeded random input of a
different batch size, and renamed into place only when the largest absolute difference is within
``atol``.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from mrseg.core.atomic import atomic_path
from mrseg.core.errors import MrsegError
from mrseg.models.checkpoint import load_checkpoint

log = logging.getLogger(__name__)

ExportFormat = Literal["onnx", "torchscript"]
FORMATS: tuple[str, ...] = ("onnx", "torchscript")
#: Lowest ONNX opset used (the dynamo exporter's native opset is at least this).
ONNX_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "patches", "logits"


class ExportError(MrsegError):
    """A model cannot be exported, the exporter is missing, or the export does not match PyTorch."""


@dataclass(frozen=True)
class ExportResult:
    """Where the export went and how closely it matches PyTorch."""

    path: Path
    format: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    max_abs_diff: float


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ExportError(
            f'ONNX export needs onnx, onnxscript and onnxruntime ({error.name} is missing): pip install "mrseg[onnx]"'
        ) from error


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1)
    try:
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=ONNX_OPSET,
            dynamic_shapes=({0: batch},),
            external_data=False,
            verbose=False,
        )
    except Exception as error:  # the exporter raises many types
        raise ExportError(f"{path.name}: ONNX export failed ({type(error).__name__}: {error})") from error


def _run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the check runs on torch's threads, no more
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    return torch.from_numpy(np.asarray(out))


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.10 deprecates torch.jit
            traced = torch.jit.trace(model, (example,), check_trace=False)
            torch.jit.save(traced, str(path))
    except Exception as error:
        raise ExportError(f"{path.name}: TorchScript export failed ({type(error).__name__}: {error})") from error


def _run_torchscript(path: Path, x: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return loaded(x)


def export_model(
    model: nn.Module,
    out: str | os.PathLike[str],
    *,
    format: ExportFormat,
    input_shape: tuple[int, ...],
    atol: float = 1e-4,
    seed: int = 0,
) -> ExportResult:
    """Export ``model`` (put in eval mode) to ``out`` and verify it; atomic.

    Parameters
    ----------
    model
        A network mapping ``input_shape`` float32 tensors to logits.
    out
        Destination file (``.onnx`` / ``.pt`` by convention).
    format
        ``"onnx"`` (opset >= :data:`ONNX_OPSET`, dynamic batch axis) or ``"torchscript"`` (traced).
    input_shape
        ``(N, J, C, H, W)`` of the example input (traced with batch ``max(N, 2)``: ``torch.export``
        specialises a batch of 1 in some backbones, e.g. ConvNeXt); the check uses one more.
    atol
        Largest accepted absolute difference between exported and PyTorch logits.
    seed
        Seed of the random example and check inputs.

    Raises
    ------
    ExportError
        Unknown format, missing optional dependency, exporter failure, or a mismatch above ``atol``.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {list(FORMATS)}")
    if format == "onnx":
        _require_onnx()
    model = model.eval()
    g = torch.Generator().manual_seed(seed)
    batch = max(int(input_shape[0]), 2)
    example = torch.randn((batch, *input_shape[1:]), generator=g)
    check = torch.randn((batch + 1, *input_shape[1:]), generator=g)
    with torch.no_grad():
        expected = model(check)
    out = Path(out)
    with atomic_path(out) as tmp:
        if format == "onnx":
            _export_onnx(model, example, tmp)
            got = _run_onnx(tmp, check)
        else:
            _export_torchscript(model, example, tmp)
            got = _run_torchscript(tmp, check)
        if got.shape != expected.shape:
            raise ExportError(f"{out}: exported model returns {tuple(got.shape)}, PyTorch {tuple(expected.shape)}")
        diff = float((got.detach().float() - expected).abs().max())
        if not diff <= atol:
            raise ExportError(f"{out}: exported model differs from PyTorch by {diff:.3g} > {atol:g}; file not written")
    log.info("exported %s to %s (max abs diff %.2e)", format, out, diff)
    return ExportResult(out, format, tuple(input_shape), tuple(expected.shape), diff)


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    format: ExportFormat = "onnx",
    batch: int = 1,
    atol: float = 1e-4,
    seed: int = 0,
) -> ExportResult:
    """Load a checkpoint with :func:`mrseg.models.checkpoint.load_checkpoint` and :func:`export_model` it.

    The input shape is ``(batch, J, in_channels, size_px, size_px)`` from the checkpoint's input spec
    and model hyper-parameters.
    """
    ckpt = load_checkpoint(checkpoint)
    model = ckpt.build_model()
    in_channels = int(ckpt.model_kwargs.get("in_channels", 3))
    size = ckpt.input_spec.size_px
    shape = (batch, len(ckpt.input_spec.mpps), in_channels, size, size)
    return export_model(model, out, format=format, input_shape=shape, atol=atol, seed=seed)
