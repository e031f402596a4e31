"""Tests of mrseg.models.fusion: centre crop, crop-and-upscale, one level's fusion with the default fuser."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mrseg.core.errors import ModelConfigError
from mrseg.models.fusers.concat import ConcatFuser
from mrseg.models.fusion import CropUpscale, Fusion, center_crop


def test_center_crop_takes_the_centre() -> None:
    x = torch.arange(64.0).view(1, 1, 8, 8)
    crop = center_crop(x, 2)
    assert torch.equal(crop, x[..., 2:6, 2:6])
    crop4 = center_crop(x, 4)
    assert torch.equal(crop4, x[..., 3:5, 3:5])
    # a single marked centre block survives, the border is gone
    y = torch.zeros(1, 1, 16, 16)
    y[..., 6:10, 6:10] = 1.0
    assert center_crop(y, 4).sum() == 16 and center_crop(y, 4).min() == 1


def test_center_crop_odd_remainder_floors() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # crop of 1 px from 4: offset floor(3/2) = 1
    assert center_crop(x, 4).item() == x[0, 0, 1, 1].item()


def test_bilinear_upscale_of_constant_is_constant() -> None:
    up = CropUpscale(3, gamma=4, mode="bilinear")
    x = torch.full((2, 3, 16, 16), 2.5)
    out = up(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, x)


def test_bilinear_upscale_maps_centre_region() -> None:
    # left half 0, right half 1: the crop of the centre sees the edge, upscaled back it stays monotone
    x = torch.zeros(1, 1, 8, 8)
    x[..., :, 4:] = 1.0
    out = CropUpscale(1, gamma=2, mode="bilinear")(x)
    assert out.shape == (1, 1, 8, 8)
    row = out[0, 0, 0]
    assert torch.all(row[1:] >= row[:-1]) and row[0] == 0 and row[-1] == 1
    # only the cropped columns 2..5 influence the output: changing the border changes nothing
    x2 = x.clone()
    x2[..., :, :2] = 7.0
    torch.testing.assert_close(CropUpscale(1, gamma=2, mode="bilinear")(x2), out)


def test_transposed_upscale_shapes_and_locality() -> None:
    torch.manual_seed(0)
    up = CropUpscale(2, gamma=4, mode="transposed").eval()
    conv = up.up[0]  # type: ignore[index]
    assert isinstance(conv, nn.ConvTranspose2d) and conv.kernel_size == (4, 4) and conv.stride == (4, 4)
    x = torch.randn(1, 2, 16, 16)
    out = up(x)
    assert out.shape == x.shape
    x2 = x.clone()
    x2[..., :6, :] += 5.0  # outside the centre 4x4 crop (rows 6..9)
    torch.testing.assert_close(up(x2), out)


def test_crop_upscale_rejects_unknown_mode() -> None:
    with pytest.raises(ModelConfigError, match=r"unknown upscale 'nearest'.*bilinear"):
        CropUpscale(1, 2, "nearest")


def test_fusion_restores_channel_count_with_identity_activation() -> None:
    fusion = Fusion(4, [2, 4], "bilinear").eval()
    assert isinstance(fusion.fuse, ConcatFuser)
    conv = fusion.fuse[0]
    assert isinstance(conv, nn.Conv2d) and conv.in_channels == 12 and conv.out_channels == 4
    assert conv.kernel_size == (1, 1)
    assert not any(isinstance(m, nn.ReLU) for m in fusion.fuse)
    out = fusion(torch.randn(1, 4, 8, 8), [torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)])
    assert out.shape == (1, 4, 8, 8) and (out < 0).any()


def test_fusion_keeps_the_parameter_names_of_earlier_checkpoints() -> None:
    names = list(Fusion(2, [2], "transposed").state_dict())
    assert names[:2] == ["upscale.0.up.0.weight", "upscale.0.up.1.weight"]
    assert [n for n in names if n.startswith("fuse.")][:3] == ["fuse.0.weight", "fuse.1.weight", "fuse.1.bias"]


def test_fusion_takes_a_fuser_by_name() -> None:
    assert type(Fusion(2, [2], fuser="concat").fuse).__name__ == "ConcatFuser"
    with pytest.raises(ModelConfigError, match=r"unknown fuser 'sum'; choose one of \['concat'"):
        Fusion(2, [2], fuser="sum")
