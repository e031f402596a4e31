"""The input spec: the one mpp rule, patch sizes, normalisation, (de)serialisation."""

from __future__ import annotations

import numpy as np
import pytest

from mrseg.core.errors import ConfigError
from mrseg.core.input_spec import DEFAULT_MEAN, DEFAULT_STD, InputSpec, check_mpps, check_patch_size


def test_check_mpps_accepts_ascending_positive_values() -> None:
    assert check_mpps([0.5, 1, 2]) == (0.5, 1.0, 2.0)
    assert check_mpps((4.0,)) == (4.0,)
    assert check_mpps(np.array([0.25, 0.5])) == (0.25, 0.5)


@pytest.mark.parametrize(
    ("mpps", "needle"),
    [
        ("0.5", "must be a list"),
        (0.5, "must be a list"),
        ([], "is empty"),
        (["a"], "must be numbers"),
        ([0.5, -1.0], "must be positive"),
        ([0.5, float("nan")], "must be positive"),
        ([0.0], "must be positive"),
        ([1.0, 0.5], "strictly ascending"),
        ([0.5, 0.5], "strictly ascending"),
    ],
)
def test_check_mpps_refuses_with_the_name_and_the_rule(mpps: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=rf"^--mpps .*{needle}|^--mpps {needle}"):
        check_mpps(mpps, what="--mpps")


def test_check_patch_size() -> None:
    assert check_patch_size(64) == 64 and check_patch_size(np.int64(8)) == 8
    for bad in (0, -8, 8.0, True, "64"):
        with pytest.raises(ConfigError, match="patch size must be a positive integer"):
            check_patch_size(bad)


def test_input_spec_fields_and_derived_values() -> None:
    spec = InputSpec([0.5, 1, 2], 64)
    assert spec.mpps == (0.5, 1.0, 2.0) and spec.size_px == 64
    assert spec.mean == DEFAULT_MEAN and spec.std == DEFAULT_STD
    assert spec.num_resolutions == 3 and spec.field_of_view_um() == (32.0, 64.0, 128.0)
    with pytest.raises(ConfigError, match="strictly ascending"):
        InputSpec((2.0, 1.0), 64)
    with pytest.raises(ConfigError, match="patch size"):
        InputSpec((1.0,), 0)


def test_normalisation_is_checked() -> None:
    assert InputSpec((1.0,), 8, mean=(0, 0, 0), std=(1, 1, 1)).mean == (0.0, 0.0, 0.0)
    with pytest.raises(ConfigError, match="std > 0"):
        InputSpec((1.0,), 8, std=(0.25, 0.0, 0.25))
    with pytest.raises(ConfigError, match="3 values each"):
        InputSpec((1.0,), 8, mean=(0.5, 0.5))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="3 numbers each"):
        InputSpec((1.0,), 8, mean=("a", "b", "c"))  # type: ignore[arg-type]


def test_round_trip_and_defaults_of_old_records() -> None:
    spec = InputSpec((0.5, 1.0), 32, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4))
    assert InputSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict() == {"mpps": [0.5, 1.0], "size_px": 32, "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.3, 0.4]}
    assert InputSpec.from_dict({"mpps": [1.0], "size_px": 16}) == InputSpec((1.0,), 16)  # no mean/std stored
    with pytest.raises(KeyError):
        InputSpec.from_dict({"size_px": 16})
