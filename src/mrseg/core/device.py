"""Which device to compute on: ``auto|cpu|cuda|cuda:N|mps`` -> :class:`torch.device` (training, prediction, demo)."""

from __future__ import annotations

import torch

from mrseg.core.errors import ConfigError


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda|cuda:N|mps`` into a :class:`torch.device`, checking it exists.

    Raises
    ------
    ConfigError
        Unknown spec, or CUDA/MPS requested but not available.
    """
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"--device {spec!r}: expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise ConfigError(f"--device {spec}: MPS is not available on this machine")
    elif device.type != "cpu":
        raise ConfigError(f"--device {spec!r}: expected auto, cpu, cuda, cuda:N or mps")
    return device


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """True when ``device`` computes bf16 convolutions natively (CUDA with bf16, or CPU with AVX512-BF16/AMX).

    Where this is false, bf16 is emulated and several times slower than float32 (an AVX2-only CPU:
    5-6x, docs/performance.md), so ``--precision auto`` and ``train.amp`` keep float32 there.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


__all__ = ["native_bf16", "resolve_device"]
