"""Cost of a network per input tile: parameters, FLOPs and activation memory.

FLOPs are ``2 x`` multiply-accumulates of every :class:`~torch.nn.Conv2d`,
:class:`~torch.nn.ConvTranspose2d` and :class:`~torch.nn.Linear`, counted exactly from the shapes seen
by forward hooks (batch norm, ReLU, pooling and interpolation are not counted; they are < 1 % here).

Two activation-memory figures are reported, both per sample, in bytes:

``activation_bytes``
    Sum of the output tensors of every leaf module in one inference forward (outputs written in
    place into their input, i.e. ReLU, are not counted again): what a forward would hold if
    nothing were freed, an upper bound of the inference working set.
``saved_bytes``
    Bytes of the distinct tensors autograd saves for the backward pass in a training-mode forward
    (captured with :func:`torch.autograd.graph.saved_tensors_hooks`, deduplicated by storage): the
    activation part of the peak training memory, excluding parameters, gradients and optimiser state.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from mrseg.core.errors import ConfigError
from mrseg.models.backbones import DEFAULT_ENCODER
from mrseg.models.base import SegmentationModel
from mrseg.models.registry import create_model, model_names, model_options
from mrseg.models.sizes import describe_valid_sizes


@dataclass(frozen=True)
class ModelProfile:
    """Costs of one network for one input tile (batch 1)."""

    name: str
    params: int
    gflops: float
    activation_bytes: int
    saved_bytes: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["output_shape"] = list(self.output_shape)
        return d


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _macs(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
        return output.numel() * per_output
    if isinstance(module, nn.ConvTranspose2d):
        # every input element is multiplied into a kernel-sized patch of out_channels/groups outputs
        per_input = (module.out_channels // module.groups) * math.prod(module.kernel_size)
        return inputs[0].numel() * per_input
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def _storage_key(t: torch.Tensor) -> int:
    """Identity of a tensor's storage (the C++ StorageImpl address; also valid on the meta device)."""
    return int(t.untyped_storage()._cdata)


@contextmanager
def _hooks(model: nn.Module, macs: list[int], outputs: list[int]) -> Iterator[None]:
    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
        if isinstance(output, torch.Tensor):
            macs[0] += _macs(module, inputs, output)
            key = _storage_key(output)
            if not any(isinstance(t, torch.Tensor) and _storage_key(t) == key for t in inputs):
                outputs[0] += output.numel() * output.element_size()  # in-place outputs are not new memory

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def count_flops(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """FLOPs (``2 x`` MACs) and leaf-module output bytes (in-place outputs excluded) of one eval forward."""
    macs, outputs = [0], [0]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _hooks(model, macs, outputs):
            model(x)
    finally:
        model.train(was_training)
    return 2 * macs[0], outputs[0]


def saved_tensor_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of distinct tensors autograd saves for backward in one training-mode forward on ``x``.

    Parameters are excluded (they are resident anyway). Batch-norm running statistics are restored
    afterwards, so the model is unchanged.
    """
    param_keys = {_storage_key(p) for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in param_keys:
            seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes())
        return t

    state = {k: v.clone() for k, v in model.state_dict().items()}
    was_training = model.training
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(x)
        del out
    finally:
        model.load_state_dict(state)
        model.train(was_training)
    return sum(seen.values())


def input_shape_for(model: nn.Module, size: int, batch: int = 1) -> tuple[int, ...]:
    """Input shape ``(N, J, in_channels, size, size)`` a registry model takes (from ``model.hparams``)."""
    hp = getattr(model, "hparams", {})
    return (batch, len(hp.get("mpps", [0.0])), int(hp.get("in_channels", 3)), size, size)


def meta_copy(model: nn.Module) -> nn.Module:
    """The same architecture on the ``meta`` device (shapes only: no memory, no arithmetic)."""
    hparams = getattr(model, "hparams", None)
    if isinstance(hparams, dict) and "name" in hparams:
        with torch.device("meta"):
            return create_model(**hparams)
    return copy.deepcopy(model).to("meta")


def profile_model(model: nn.Module, size: int, name: str | None = None, *, device: str = "meta") -> ModelProfile:
    """Parameters, GFLOPs, activation bytes and saved bytes of ``model`` for one ``size`` x ``size`` tile.

    With ``device="meta"`` (default) the forward passes run on a shape-only copy of the model, so
    profiling a large model at a large size costs neither memory nor time; ``"cpu"`` runs ``model``
    itself on random input (same numbers; used in the tests to check the meta path).
    """
    shape = input_shape_for(model, size)
    target = meta_copy(model) if device == "meta" else model
    x = torch.randn(shape, device=device)
    flops, activation = count_flops(target, x)
    with torch.no_grad():
        out_shape = tuple(target.eval()(x).shape)
    saved = saved_tensor_bytes(target, torch.randn(shape, device=device))
    return ModelProfile(
        name=name or str(getattr(model, "hparams", {}).get("name", type(model).__name__)),
        params=count_params(model),
        gflops=flops / 1e9,
        activation_bytes=activation,
        saved_bytes=saved,
        input_shape=shape,
        output_shape=out_shape,
    )


def catalog_models(
    mpps: list[float], *, encoders: tuple[str, ...] = (DEFAULT_ENCODER,), per_j: bool = False, **options: Any
) -> list[tuple[str, int, SegmentationModel]]:
    """``(encoder, J, model)`` of every registered architecture over each encoder, on the ``meta`` device.

    Without ``per_j``: every architecture at ``mpps`` (the U-Net at the finest one). With ``per_j``:
    for J = 1..len(mpps) the first J resolutions, J = 1 as the U-Net (the one-branch MRN) and
    J >= 2 as every other architecture. ``options`` (``width``, ``depth``, ``num_classes``) go to
    :func:`create_model`; architectures without an ``encoder`` option are listed for ``"unet"`` only.
    """
    plan: list[tuple[str, int, str]] = []
    for encoder in encoders:
        names = [n for n in model_names() if encoder == DEFAULT_ENCODER or "encoder" in model_options(n)]
        js = range(1, len(mpps) + 1) if per_j else [len(mpps)]
        plan += [
            (encoder, 1 if n == "unet" else j, n) for j in js for n in names if not per_j or (n == "unet") == (j == 1)
        ]
    with torch.device("meta"):  # shapes only: profiling needs no weights
        return [(e, j, _build(n, mpps[:j], e, options)) for e, j, n in plan]


def _build(name: str, mpps: list[float], encoder: str, options: dict[str, Any]) -> SegmentationModel:
    extra = {"encoder": encoder} if "encoder" in model_options(name) else {}
    return create_model(name, mpps=mpps, **extra, **options)


def profile_catalog(
    mpps: list[float], size: int, *, encoders: tuple[str, ...] = (DEFAULT_ENCODER,), per_j: bool = False,
    **options: Any,
) -> list[dict[str, Any]]:  # fmt: skip
    """One :class:`ModelProfile` row (a dict, plus encoder, J and mpps) per model of :func:`catalog_models`.

    Raises
    ------
    ConfigError
        ``size`` is not a multiple of a model's required multiple (names the model and sizes that work).
    """
    models = catalog_models(mpps, encoders=encoders, per_j=per_j, **options)
    encoder, j, strictest = max(models, key=lambda row: row[2].required_multiple)
    if size % strictest.required_multiple:
        reason = describe_valid_sizes(
            strictest.required_multiple, size, strictest.depth, strictest.mpps, min_depth=strictest.min_depth
        )
        raise ConfigError(f"{strictest.name} (encoder {encoder!r}, J = {j}): {reason}")
    return [
        {**profile_model(model, size).to_dict(), "encoder": e, "j": j, "mpps": model.hparams["mpps"], "size": size}
        | options
        for e, j, model in models
    ]
