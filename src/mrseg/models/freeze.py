"""Freezing chosen branches or stages of the encoders, for fine-tuning a (pretrained) backbone.

The ``freeze`` option of the architectures takes a list of selectors:

``"encoder"``
    every branch's whole encoder;
``"stage<k>"``
    feature stage ``k`` (0-based, finest first: the parameters that compute map ``k`` from map
    ``k - 1``, :meth:`mrseg.models.encoder.Encoder.stages`) in every branch, e.g. ``"stage0"`` for a
    ResNet's stem;
``"branch<j>"``, ``"branch<j>.stage<k>"``
    branch ``j`` only (1-based, finest first, as in the paper: ``branch1`` sees the finest patch);
    needs ``branch_weights="separate"``.

Frozen parameters get ``requires_grad = False`` (the optimiser skips them), and batch norms whose
parameters are all frozen stay in eval mode while training (:func:`frozen_norms`), so their running
statistics keep what the backbone learnt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn

from mrseg.core.errors import ModelConfigError
from mrseg.models.encoder import Encoder

_SELECTOR = re.compile(r"^(?:encoder|branch(?P<branch>\d+)(?:\.stage(?P<bstage>\d+))?|stage(?P<stage>\d+))$")
RULE = "'encoder', 'stage<k>', 'branch<j>' or 'branch<j>.stage<k>' (j from 1, finest first; k from 0)"


def _parse(selector: str, branches: int, stages: int, separate: bool) -> tuple[range, range]:
    """The (branch indices, stage indices) one selector names, both 0-based."""
    match = _SELECTOR.match(selector) if isinstance(selector, str) and selector else None
    if match is None:
        raise ModelConfigError(f"freeze: {selector!r} is not a selector; use {RULE}")
    branch, stage = match["branch"], match["stage"] or match["bstage"]
    if branch is not None and not 1 <= int(branch) <= branches:
        raise ModelConfigError(f"freeze: {selector!r} names branch {branch}; the model has branches 1..{branches}")
    if branch is not None and not separate:
        raise ModelConfigError(f"freeze: {selector!r} needs branch_weights='separate' (the branches share weights)")
    if stage is not None and not 0 <= int(stage) < stages:
        raise ModelConfigError(f"freeze: {selector!r} names stage {stage}; the encoder has stages 0..{stages - 1}")
    b = range(int(branch) - 1, int(branch)) if branch is not None else range(branches)
    s = range(int(stage), int(stage) + 1) if stage is not None else range(stages)
    return b, s


def freeze_encoders(encoders: Sequence[Encoder], selectors: Sequence[str], *, separate: bool) -> int:
    """Set ``requires_grad = False`` on the parameters ``selectors`` name; returns how many were frozen.

    ``encoders`` are the model's J encoders, branch 1 first (the same object J times when shared).
    """
    if isinstance(selectors, str):
        raise ModelConfigError(f"freeze must be a list of selectors, got the string {selectors!r}")
    if not selectors:
        return 0
    stages = [encoder.stages() for encoder in encoders]
    frozen = 0
    for selector in selectors:
        branch_range, stage_range = _parse(selector, len(encoders), len(stages[0]), separate)
        for b in branch_range:
            for s in stage_range:
                for parameter in stages[b][s]:
                    frozen += int(parameter.requires_grad)
                    parameter.requires_grad_(False)
    return frozen


def frozen_norms(model: nn.Module) -> list[nn.Module]:
    """Batch norms of ``model`` that have parameters, all frozen (kept in eval mode while training)."""
    found: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            parameters = list(module.parameters(recurse=False))
            if parameters and not any(p.requires_grad for p in parameters):
                found.append(module)
    return found
