"""Tests of mrseg.models.fusion: centre crop, crop-and-upscale, one level's fusion with the default fuser."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mrseg.core.errors import ModelConfigError
from mrseg.models import create_model
from mrseg.models.fusers.concat import ConcatFuser
from mrseg.models.fusion import CropUpscale, Fusion, center_crop, init_nearest


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


def test_nearest_init_starts_as_nearest_neighbour_upscaling_of_the_centre() -> None:
    # pixel values encode (channel, row, col): the upscaled map repeats each centre pixel gamma x gamma times
    c, h, gamma = 3, 16, 4
    grid = torch.arange(c * h * h, dtype=torch.float32).reshape(1, c, h, h)
    up = CropUpscale(c, gamma=gamma, mode="transposed", init="nearest")
    conv = up.up[0]  # type: ignore[index]
    out = conv(center_crop(grid, gamma))
    top = (h - h // gamma) // 2
    for ch in range(c):
        for y in (0, 5, 15):
            for x in (0, 7, 12):
                assert out[0, ch, y, x] == grid[0, ch, top + y // gamma, top + x // gamma]
    # defaults stay PyTorch's random initialisation
    random = CropUpscale(c, gamma=gamma, mode="transposed").up[0]  # type: ignore[index]
    assert random.weight.std() > 0 and not torch.equal(random.weight, conv.weight)


def test_upscale_init_is_checked() -> None:
    with pytest.raises(ModelConfigError, match=r"unknown upscale_init 'bilinear'.*random"):
        CropUpscale(1, 2, "transposed", "bilinear")
    with pytest.raises(ModelConfigError, match=r"upscale_init 'nearest' needs learned upscaling"):
        CropUpscale(1, 2, "bilinear", "nearest")
    with pytest.raises(ModelConfigError, match=r"in = out channels"):
        init_nearest(nn.ConvTranspose2d(2, 3, kernel_size=2, stride=2))


def test_mrn_records_upscale_init_and_applies_it_to_every_level() -> None:
    model = create_model("mrn_transposed", mpps=[0.5, 1.0, 2.0], width=4, depth=2, upscale_init="nearest")
    assert model.hparams["upscale_init"] == "nearest"
    ups = [m for m in model.modules() if isinstance(m, CropUpscale)]
    assert len(ups) == 6 and all(m.init == "nearest" for m in ups)
    with pytest.raises(ModelConfigError, match="needs learned upscaling"):
        create_model("mrn_bilinear", mpps=[0.5, 1.0], upscale_init="nearest")


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
