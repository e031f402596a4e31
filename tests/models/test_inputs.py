"""The input transform: the same values in both layouts, bit for bit, as the original formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mrseg.core.input_spec import InputSpec
from mrseg.models.inputs import to_tensor

SPEC = InputSpec((0.5, 1.0), 16, mean=(0.7, 0.5, 0.6), std=(0.2, 0.25, 0.15))


def reference(patches: np.ndarray, spec: InputSpec) -> torch.Tensor:
    """The formula as first written: permute, float, / 255, - mean, / std, contiguous."""
    t = torch.as_tensor(patches).permute(0, 1, 4, 2, 3).to(torch.float32).div_(255.0)
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, 1, 3, 1, 1)
    return t.sub_(mean).div_(std).contiguous()


@pytest.fixture()
def patches() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (3, 2, 16, 16, 3), dtype=np.uint8)


def test_default_layout_is_contiguous_and_bit_equal(patches: np.ndarray) -> None:
    x = to_tensor(patches, SPEC)
    assert x.shape == (3, 2, 3, 16, 16) and x.dtype == torch.float32 and x.is_contiguous()
    assert torch.equal(x, reference(patches, SPEC))
    assert torch.equal(to_tensor(torch.from_numpy(patches), SPEC), x)


def test_channels_last_layout_has_the_same_values(patches: np.ndarray) -> None:
    x = to_tensor(patches, SPEC, channels_last=True)
    assert torch.equal(x, reference(patches, SPEC))
    assert x.permute(0, 1, 3, 4, 2).is_contiguous()  # memory (N, J, H, W, 3)
    assert x[:, 1].stride()[1] == 1  # each branch: channels fastest
    assert to_tensor(patches[:, :1], SPEC, channels_last=True)[:, 0].is_contiguous(memory_format=torch.channels_last)


def test_one_sample_and_non_contiguous_input(patches: np.ndarray) -> None:
    assert to_tensor(patches[0], SPEC).shape == (1, 2, 3, 16, 16)
    view = patches[:, :, ::2, ::2]
    assert torch.equal(to_tensor(view, SPEC, channels_last=True), reference(np.ascontiguousarray(view), SPEC))
    fortran = np.asfortranarray(patches)  # normalised row by row: the float copy must be C-ordered
    for channels_last in (False, True):
        assert torch.equal(to_tensor(fortran, SPEC, channels_last=channels_last), reference(patches, SPEC))


def test_an_empty_batch_keeps_its_shape() -> None:
    for channels_last in (False, True):
        x = to_tensor(np.zeros((0, 2, 16, 16, 3), np.uint8), SPEC, channels_last=channels_last)
        assert x.shape == (0, 2, 3, 16, 16)


def test_refuses_other_shapes() -> None:
    with pytest.raises(ValueError, match="expected uint8 patches"):
        to_tensor(np.zeros((2, 16, 16, 4), np.uint8), SPEC)


@pytest.mark.parametrize("channels_last", [False, True])
def test_every_byte_value_and_channel_matches_the_torch_formula(channels_last: bool) -> None:
    """numpy's float32 arithmetic gives torch's bytes for all 256 values of every channel, in both layouts."""
    values = np.broadcast_to(np.arange(256, dtype=np.uint8)[:, None], (256, 3)).reshape(1, 1, 16, 16, 3)
    imagenet = InputSpec((0.5,), 16, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    for spec in (SPEC, InputSpec((0.5,), 16), imagenet):
        x = to_tensor(values.copy(), spec, channels_last=channels_last)
        assert torch.equal(x, reference(values.copy(), spec))
        assert x.is_contiguous() or channels_last


def test_a_cpu_tensor_and_an_array_give_the_same_bytes(patches: np.ndarray) -> None:
    for channels_last in (False, True):
        a = to_tensor(patches, SPEC, channels_last=channels_last)
        b = to_tensor(torch.from_numpy(patches), SPEC, channels_last=channels_last)
        assert torch.equal(a, b) and a.stride() == b.stride()
