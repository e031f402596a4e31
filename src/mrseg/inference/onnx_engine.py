"""The ONNX Runtime engine (``engine="onnx"``): a network exported once, then run by ONNX Runtime on the CPU.

The network, with its batch norms folded (:func:`mrseg.models.fold.fold_batch_norm`), goes through
the project's one ONNX export (:func:`mrseg.models.export.export_model`: dynamic batch axis,
verified against PyTorch before the file is kept). The file is cached under
:func:`engine_cache_dir` by a key of the weights, architecture, patch shape, torch version and opset
(:func:`export_key`), so the export (seconds to a minute) is paid once per checkpoint and machine;
:attr:`OnnxPredictor.export_s` says what it cost in this process (0 on a cache hit).

ONNX Runtime's CPU provider runs the convolutions in its blocked ``NCHWc`` layout with bias and
ReLU fused. On the development machine (2-core AVX2) it is within 10 % of the torch engine, model
only (``benchmarks/engine_ceiling.py``: 1.04-1.20x against 1.02-1.10x of the same reference, idle),
and slower end to end in a loaded head to head (docs/performance.md), so ``torch`` stays the default.
The predictor takes and returns what the torch engine does:
float32 ``(N, J, 3, H, W)`` -> float32 logits ``(N, C, H, W)``. ``onnx``, ``onnxscript`` and
``onnxruntime`` are optional (``pip install "mrseg[onnx]"``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mrseg.core.errors import ConfigError
from mrseg.models.export import ONNX_OPSET, OUTPUT_NAME, ExportError, export_model
from mrseg.models.fold import fold_batch_norm

log = logging.getLogger(__name__)

#: Environment variable naming the cache folder of exported engines (default ``~/.cache/mrseg``).
CACHE_ENV = "MRSEG_CACHE_DIR"
ONNX_HINT = 'the onnx engine needs onnx, onnxscript and onnxruntime: pip install "mrseg[onnx]"'


def engine_cache_dir() -> Path:
    """The export cache: ``$MRSEG_CACHE_DIR/onnx``, else ``$XDG_CACHE_HOME/mrseg/onnx`` (``~/.cache``)."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root) / "onnx"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mrseg" / "onnx"


def export_key(model: nn.Module, input_shape: tuple[int, ...]) -> str:
    """SHA-256 of what the exported graph depends on: weights and buffers, architecture, input shape, versions."""
    h = hashlib.sha256()
    hparams = getattr(model, "hparams", {"class": type(model).__qualname__})
    h.update(json.dumps({"hparams": hparams, "shape": list(input_shape[1:])}, sort_keys=True, default=str).encode())
    h.update(f"torch {torch.__version__} opset {ONNX_OPSET}".encode())
    for name, value in model.state_dict().items():
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _session(path: Path, threads: int) -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise ConfigError(ONNX_HINT) from error
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No busy-waiting between operators: on a small CPU the slide reader threads need those cycles.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def exported_model(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[Path, float]:
    """The cached ONNX file of ``model`` (exported now when missing) and the seconds this call spent exporting."""
    folded = copy.deepcopy(model).cpu().float().eval()
    fold_batch_norm(folded)
    path = engine_cache_dir() / f"{export_key(folded, input_shape)}.onnx"
    if path.is_file():
        return path, 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        export_model(folded, path, format="onnx", input_shape=input_shape)
    except ExportError as error:
        raise ConfigError(f"the onnx engine cannot be built: {error}") from error
    seconds = time.perf_counter() - t0
    log.info("exported the network for ONNX Runtime in %.1f s (cached as %s)", seconds, path)
    return path, seconds


class OnnxPredictor:
    """Callable running an exported network with ONNX Runtime: ``predictor(x) -> float32 logits``.

    Attributes
    ----------
    path
        The ONNX file.
    export_s
        Seconds spent exporting it in this process (0 when it came from the cache).
    device, precision, channels_last
        Always the CPU, ``"fp32"`` and False (inputs are contiguous ``(N, J, 3, H, W)``).
    """

    def __init__(self, path: Path, threads: int, export_s: float = 0.0) -> None:
        self.path = path
        self.export_s = export_s
        self.device = torch.device("cpu")
        self.precision = "fp32"
        self.channels_last = False
        self._session = _session(path, threads)
        self._input = self._session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        (out,) = self._session.run([OUTPUT_NAME], {self._input: array})
        return torch.from_numpy(np.asarray(out))


def onnx_predictor(model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> OnnxPredictor:
    """Export ``model`` for ``(N, J, C, H, W)`` inputs (cached) and open it in ONNX Runtime with torch's thread count.

    Raises
    ------
    ConfigError
        ``device`` is not the CPU, the optional dependencies are missing, or the export fails.
    """
    if device.type != "cpu":
        raise ConfigError(f"the onnx engine runs on the CPU, not {device}; use engine torch on {device.type}")
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ConfigError(ONNX_HINT) from error
    path, seconds = exported_model(model, input_shape)
    return OnnxPredictor(path, torch.get_num_threads(), seconds)


__all__ = ["CACHE_ENV", "OnnxPredictor", "engine_cache_dir", "export_key", "exported_model", "onnx_predictor"]
