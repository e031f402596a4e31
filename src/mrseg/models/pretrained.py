"""Pretrained backbone weights, from a local file or a cache that already holds them; never downloaded.

``load_pretrained(model, source)`` loads weights into every timm encoder of ``model`` (all J
branches start from the same weights). ``source`` is either

* a file: ``.safetensors``, or a torch state dict (``.pth``, ``.pt``, ``.bin``, ``.ckpt``) read with
  ``torch.load(..., weights_only=True)``; a ``{"state_dict": ...}`` / ``{"model": ...}`` wrapper and a
  DDP ``module.`` prefix are unwrapped; or
* a timm name (``"resnet34"`` for its default weights, or ``"resnet34.a1_in1k"``), whose file must
  already be in the Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``) or torch's hub cache: fetch
  it once with ``timm.create_model(name, pretrained=True)`` on a machine with network access.

The file holds the plain timm model's state dict (``timm.create_model(name).state_dict()``, head
included or not). Every tensor the encoder needs must be there with its shape; layers the encoder
does not use (later stages, the classifier) are ignored. Anything else is a
:class:`PretrainedWeightsError` naming the file and the first mismatched key.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mrseg.core.errors import MrsegError
from mrseg.models.backbones import TIMM_HINT, TimmEncoder, import_timm

log = logging.getLogger(__name__)

#: Suffixes taken as a file name (anything else without a path separator is a timm name).
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
#: Files of a timm model repository on the Hugging Face hub, in the order they are looked for.
HUB_FILES = ("model.safetensors", "pytorch_model.bin")


class PretrainedWeightsError(MrsegError):
    """Pretrained weights cannot be found, read, or do not fit the backbone."""


def read_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (safetensors, or a torch file loaded with ``weights_only=True``).

    Raises
    ------
    PretrainedWeightsError
        Missing or unreadable file, or no dictionary of tensors in it.
    """
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(f"{path}: pretrained weights not found")
    try:
        if path.suffix == ".safetensors":
            raw: Any = importlib.import_module("safetensors.torch").load_file(str(path), device="cpu")
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except ImportError as error:
        hint = f"{path}: reading safetensors needs the safetensors package; {TIMM_HINT}"
        raise PretrainedWeightsError(hint) from error
    except Exception as error:  # torch / safetensors raise many types for corrupt or unsafe files
        reason = f"{type(error).__name__}: {error}"
        raise PretrainedWeightsError(f"{path}: not a readable weights file ({reason})") from error
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
            break
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise PretrainedWeightsError(f"{path}: not a state dict (a dictionary of tensors)")
    return {str(k).removeprefix("module."): v for k, v in raw.items()}


def cached_weights(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cached weights file of the timm pretrained name ``name`` (never downloads).

    Looks in the Hugging Face cache (``cache_dir``, default ``HF_HUB_CACHE``) for the repository of
    timm's pretrained config, then in torch's hub cache for its URL.

    Raises
    ------
    PretrainedWeightsError
        Unknown name or tag, or the weights are in neither cache.
    """
    timm = import_timm()
    try:
        cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=False)
    except RuntimeError as error:
        raise PretrainedWeightsError(f"pretrained {name!r}: {error}") from None
    if cfg is None:
        raise PretrainedWeightsError(f"pretrained {name!r}: timm has no pretrained weights of that name")
    looked: list[str] = []
    if cfg.hf_hub_id:
        hub = importlib.import_module("huggingface_hub")
        for filename in (cfg.hf_hub_filename, *HUB_FILES):
            found = hub.try_to_load_from_cache(cfg.hf_hub_id, filename, cache_dir=cache_dir) if filename else None
            if isinstance(found, str):
                return Path(found)
        looked.append(f"Hugging Face cache ({cache_dir or hub.constants.HF_HUB_CACHE}) for {cfg.hf_hub_id}")
    if cfg.url:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)
        if candidate.is_file():
            return candidate
        looked.append(str(candidate))
    raise PretrainedWeightsError(
        f"pretrained {name!r} is not cached (looked in {'; '.join(looked) or 'no source'}); mrseg never downloads: "
        f"fetch it once with python -c \"import timm; timm.create_model('{name}', pretrained=True)\" "
        "or pass the weights file"
    )


def resolve_weights(source: str, encoder: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The weights file ``source`` names for ``encoder``: the path itself, or a timm name's cached file.

    Raises
    ------
    PretrainedWeightsError
        A timm name of another architecture than ``encoder``, or weights not found.
    """
    text = os.fspath(source)
    if text.endswith(WEIGHT_SUFFIXES) or os.sep in text or Path(text).exists():
        return Path(text)
    architecture = encoder.partition(".")[0]
    if text.partition(".")[0] != architecture:
        raise PretrainedWeightsError(
            f"pretrained {text!r} is a timm name of another architecture than the encoder {encoder!r} "
            f"(use {architecture!r} or {architecture + '.<tag>'!r}, or a weights file)"
        )
    return cached_weights(text, cache_dir)


def check_weights(
    weights: Mapping[str, torch.Tensor],
    target: nn.Module,
    path: Path,
    *,
    known: set[str] | None = None,
    skip: tuple[str, ...] = (),
) -> None:
    """Raise :class:`PretrainedWeightsError` unless ``weights`` holds every tensor of ``target`` with its shape.

    ``known`` are the keys of the whole (unpruned) model: a key outside them means weights of
    another architecture. ``skip`` names keys whose shape may differ (a first convolution adapted
    to other input channels).
    """
    unexpected = next((k for k in weights if known is not None and k not in known), None)
    if unexpected is not None:
        raise PretrainedWeightsError(
            f"{path}: unexpected key {unexpected!r}, which the backbone does not have (weights of another model?)"
        )
    for key, tensor in target.state_dict().items():
        if key not in weights:
            if key.endswith("num_batches_tracked"):
                continue
            raise PretrainedWeightsError(
                f"{path}: no tensor for {key!r} (the first of the backbone's keys the file lacks; "
                f"the file has {len(weights)} keys, e.g. {next(iter(weights))!r})"
            )
        if key not in skip and tuple(weights[key].shape) != tuple(tensor.shape):
            raise PretrainedWeightsError(
                f"{path}: {key!r} has shape {tuple(weights[key].shape)}, the backbone needs {tuple(tensor.shape)}"
            )


def _fitted(weights: dict[str, torch.Tensor], encoder: TimmEncoder) -> dict[str, torch.Tensor]:
    """The tensors of ``weights`` the encoder's model uses, the first convolution adapted to its input channels."""
    timm = import_timm()
    first = getattr(timm.models.get_pretrained_cfg(encoder.name), "first_conv", None)
    state = encoder.model.state_dict()
    kept = {k: v for k, v in weights.items() if k in state}
    key = f"{first}.weight" if first else None
    if key in kept and kept[key].shape[1] != encoder.in_channels:
        kept[key] = timm.models.adapt_input_conv(encoder.in_channels, kept[key])
    return kept


def load_pretrained(
    model: nn.Module, source: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Load pretrained backbone weights into every timm encoder of ``model``; returns the file used.

    Raises
    ------
    PretrainedWeightsError
        ``model`` has no timm encoder, or the weights are missing, unreadable or do not fit
        (the message names the file and the first mismatched key).
    """
    encoders: list[nn.Module] = getattr(model, "encoders", list)()
    timm_encoders = list({id(e): e for e in encoders if isinstance(e, TimmEncoder)}.values())
    if not timm_encoders:
        raise PretrainedWeightsError("pretrained weights need a timm encoder (model.kwargs.encoder); 'unet' has none")
    first = timm_encoders[0]
    path = resolve_weights(os.fspath(source), first.name, cache_dir)
    weights = read_weights(path)
    timm = import_timm()
    first_conv = getattr(timm.models.get_pretrained_cfg(first.name), "first_conv", None)
    with torch.device("meta"):
        known = set(timm.create_model(first.name, pretrained=False).state_dict())
    skip = (f"{first_conv}.weight",) if first.in_channels != 3 else ()
    check_weights(weights, first.model, path, known=known, skip=skip)
    fitted = _fitted(weights, first)
    for encoder in timm_encoders:
        encoder.model.load_state_dict(fitted, strict=False)
    log.info("loaded pretrained %s weights from %s into %d encoder(s)", first.name, path, len(timm_encoders))
    return path


__all__ = [
    "HUB_FILES",
    "WEIGHT_SUFFIXES",
    "PretrainedWeightsError",
    "cached_weights",
    "check_weights",
    "load_pretrained",
    "read_weights",
    "resolve_weights",
]
