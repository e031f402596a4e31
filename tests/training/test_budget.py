"""The model is bounded before it is built (issue 12 item 2): patch divisibility and memory, on the meta device."""

from __future__ import annotations

import pytest
import torch

from mrseg.core.errors import ModelConfigError
from mrseg.training.budget import BYTES_PER_PARAMETER, check_model_budget, estimate_budget
from mrseg.training.config import Config, load_config


def _config(*overrides: str) -> Config:
    return load_config("synthetic_unet", overrides=list(overrides))


def test_the_estimate_counts_parameters_and_grows_with_the_batch() -> None:
    small = estimate_budget(_config("train.batch_size=1"))
    large = estimate_budget(_config("train.batch_size=4"))
    assert small.parameter_bytes == small.parameters * BYTES_PER_PARAMETER > 0
    assert large.activation_bytes == 4 * small.activation_bytes > 0


def test_a_patch_size_the_network_cannot_take_is_refused() -> None:
    with pytest.raises(ModelConfigError, match=r"patch_size.*sizes that work"):
        estimate_budget(_config("model.patch_size=100"))


def test_a_model_larger_than_memory_is_refused_with_both_figures() -> None:
    config = _config("model.width=4096")
    with pytest.raises(ModelConfigError, match=r"needs about [\d.]+ GiB.*more than the [\d.]+ GiB available on cpu"):
        check_model_budget(config, torch.device("cpu"))


def test_a_small_model_passes() -> None:
    assert check_model_budget(_config(), torch.device("cpu")).total_bytes > 0
