"""Branch weights: one encoder per resolution (the paper), one shared encoder, or shared convolutions.

``branch_weights`` of :class:`mrseg.models.mrn.MRN`:

``"separate"``
    J encoders of identical structure, each with its own weights (Gu et al. 2018).
``"shared"``
    One encoder applied to every branch: the encoder's parameters count once instead of J times
    (batch-norm statistics are pooled over the resolutions).
``"shared_convs"``
    J encoders whose convolution and linear weights are the same tensors, each keeping its own
    normalisation layers (per-branch batch norm): almost the parameters of ``"shared"``, while every
    resolution keeps its own feature statistics.
"""

from __future__ import annotations

from torch import nn

from mrseg.core.errors import ModelConfigError

#: Values of the ``branch_weights`` option.
BRANCH_WEIGHTS = ("separate", "shared", "shared_convs")

#: Layers that stay per branch under ``"shared_convs"``.
NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def check_branch_weights(branch_weights: str) -> None:
    """Raise :class:`ModelConfigError` unless ``branch_weights`` is one of :data:`BRANCH_WEIGHTS`."""
    if branch_weights not in BRANCH_WEIGHTS:
        raise ModelConfigError(f"unknown branch_weights {branch_weights!r}; choose one of {list(BRANCH_WEIGHTS)}")


def tie_except_norms(source: nn.Module, target: nn.Module) -> None:
    """Make ``target``'s parameters the very tensors of ``source``'s, except in normalisation layers.

    ``source`` and ``target`` must have the same structure (two builds of one encoder). Tied
    parameters count once in ``model.parameters()`` (so in the optimiser and in parameter counts);
    the state dict keeps both names, holding the same values.
    """
    for (name, mine), (other_name, theirs) in zip(source.named_modules(), target.named_modules(), strict=True):
        if name != other_name or type(mine) is not type(theirs):
            raise ModelConfigError(f"cannot tie encoders of different structure ({name!r} vs {other_name!r})")
        if isinstance(mine, NORM_LAYERS):
            continue
        for key, parameter in mine.named_parameters(recurse=False):
            setattr(theirs, key, parameter)
