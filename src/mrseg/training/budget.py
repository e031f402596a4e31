"""Will the network of a configuration fit? Checked before any slide is opened or any weight allocated.

:func:`check_model_budget` builds the configured network on PyTorch's ``meta`` device (shapes
only: no memory, no arithmetic), refuses a patch size the network cannot take (pooling depth and
the crop of the coarser branches), and estimates the memory one training step needs:

- **parameters**: 16 bytes each (float32 weights, their gradients, Adam's two moments);
- **activations**: the bytes autograd saves for the backward pass of one sample
  (:func:`mrseg.models.profile.saved_tensor_bytes`, measured on the meta copy), times
  ``train.batch_size``.

A run whose estimate exceeds the memory available on its device (free RAM for the CPU, free
device memory for CUDA) is refused with both figures, instead of growing until the kernel kills it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psutil
import torch

from mrseg.core.errors import ModelConfigError
from mrseg.models.profile import input_shape_for, saved_tensor_bytes
from mrseg.models.registry import create_model
from mrseg.models.sizes import describe_valid_sizes
from mrseg.training.config import Config

log = logging.getLogger(__name__)

#: Bytes per parameter while training with Adam: weight, gradient, two moments (float32).
BYTES_PER_PARAMETER = 16

GIB = 2**30


@dataclass(frozen=True)
class ModelBudget:
    """The memory estimate of one training step (bytes)."""

    parameters: int
    parameter_bytes: int
    activation_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.parameter_bytes + self.activation_bytes


def available_bytes(device: torch.device) -> int:
    """Memory a run can still allocate on ``device``: free device memory (CUDA) or available RAM."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return int(psutil.virtual_memory().available)


def estimate_budget(config: Config) -> ModelBudget:
    """Build ``config.model`` on the meta device, check its patch size and estimate one training step's memory.

    Raises
    ------
    ModelConfigError
        The architecture cannot be built with these hyper-parameters, or cannot take
        ``model.patch_size`` (the message lists sizes that work).
    """
    m = config.model
    with torch.device("meta"):
        model = create_model(m.name, **m.create_kwargs())
    multiple = int(getattr(model, "required_multiple", 1))
    if m.patch_size % multiple:
        raise ModelConfigError("model.patch_size: " + describe_valid_sizes(multiple, m.patch_size, m.depth, m.mpps))
    parameters = sum(p.numel() for p in model.parameters())
    x = torch.empty(input_shape_for(model, m.patch_size), device="meta")
    activations = saved_tensor_bytes(model, x) * config.train.batch_size
    return ModelBudget(parameters, parameters * BYTES_PER_PARAMETER, activations)


def check_model_budget(config: Config, device: torch.device) -> ModelBudget:
    """:func:`estimate_budget`, refused when it exceeds :func:`available_bytes` of ``device``.

    Raises
    ------
    ModelConfigError
        The patch size does not fit the network, or the estimate exceeds the available memory
        (the message gives both and what to reduce).
    """
    budget = estimate_budget(config)
    free = available_bytes(device)
    m = config.model
    log.debug(
        "model %s: %d parameters, about %.2f GiB per training step (%.2f GiB available on %s)",
        m.name, budget.parameters, budget.total_bytes / GIB, free / GIB, device,
    )  # fmt: skip
    if budget.total_bytes > free:
        raise ModelConfigError(
            f"model {m.name} (width {m.width}, depth {m.depth}, {m.patch_size} px patches, batch "
            f"{config.train.batch_size}) needs about {budget.total_bytes / GIB:.1f} GiB to train "
            f"({budget.parameters:.3g} parameters: {budget.parameter_bytes / GIB:.1f} GiB with gradients and Adam "
            f"state; activations {budget.activation_bytes / GIB:.1f} GiB per batch), more than the "
            f"{free / GIB:.1f} GiB available on {device}; reduce model.width, model.depth, model.patch_size "
            "or train.batch_size"
        )
    return budget


__all__ = ["BYTES_PER_PARAMETER", "ModelBudget", "available_bytes", "check_model_budget", "estimate_budget"]
