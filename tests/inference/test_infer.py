"""Whole-slide prediction: the tile grid, pixel alignment of stitched outputs, and bad inputs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from mrseg.core.errors import ConfigError, MissingMppError, SlideError
from mrseg.core.input_spec import InputSpec
from mrseg.core.label_spec import LabelSpec
from mrseg.inference.predict import (
    PredictSettings,
    grid_positions,
    make_tiling,
    predict_slide,
    prepare_model,
)
from mrseg.models import create_model
from mrseg.models.activation import foreground_probabilities
from mrseg.models.checkpoint import Checkpoint, make_checkpoint
from mrseg.wsi.tiff import write_pyramidal_tiff

MPPS = (1.0, 2.0, 4.0)
SIZE = 32


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a busy 2-core machine: avoid OpenMP oversubscription
    yield
    torch.set_num_threads(threads)


def make_slide(path: Path, *, mpp: float = 1.0, tissue: bool = True, seed: int = 0) -> Path:
    """320x256 px slide: white glass with a 200x150 px pink 'tissue' block (large enough for tissue detection)."""
    rng = np.random.default_rng(seed)
    image = np.full((256, 320, 3), 255, np.uint8)
    if tissue:
        t = rng.integers(0, 60, (150, 200, 1))
        image[50:200, 60:260] = np.concatenate([210 - t, 110 - t, 190 - t], axis=2).astype(np.uint8)
    return write_pyramidal_tiff(path, image, mpp, compression="zlib", min_size=64)


def make_ckpt(name: str = "mrn_bilinear", mpps: tuple[float, ...] = MPPS, classes: int = 1) -> Checkpoint:
    torch.manual_seed(0)
    model = create_model(name, mpps=list(mpps), width=4, depth=2, num_classes=classes)
    return make_checkpoint(model, InputSpec(mpps, SIZE))


class RedChannel(nn.Module):
    """Logit = normalised red channel of the finest patch: the map must reproduce the slide pixel for pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, 0:1]


@pytest.mark.parametrize(("length", "tile", "stride", "expected"), [(100, 32, 24, 4), (32, 32, 24, 1), (10, 32, 24, 1)])
def test_grid_positions_cover_the_length(length: int, tile: int, stride: int, expected: int) -> None:
    starts = grid_positions(length, tile, stride)
    assert len(starts) == expected and starts[0] == 0
    assert starts[-1] + tile >= length and np.all(np.diff(starts) == stride)


def test_tiling_chunks_and_filter() -> None:
    tiling = make_tiling((300, 200), 0.5, 1.0, 32, 0.25, 2)  # map 150 x 100 px at 1 µm/px
    assert tiling.map_shape == (100, 150) and tiling.stride == 24
    assert tiling.n_tiles == 6 * 4
    chunks = tiling.chunks()
    assert sorted(np.concatenate(chunks).tolist()) == list(range(24))
    assert max(len(c) for c in chunks) == 4  # 2 x 2 tiles per chunk
    np.testing.assert_allclose(tiling.centers_l0([0])[0], (32, 32))  # (0 + 16) map px x 2 level-0 px
    np.testing.assert_allclose(tiling.boxes_l0([1])[0], (48, 0, 112, 64))
    kept = make_tiling((300, 200), 0.5, 1.0, 32, 0.25, 2, keep=lambda boxes: boxes[:, 0] < 100)
    assert kept.n_tiles == 3 * 4


def test_probabilities_of_binary_and_multiclass_logits() -> None:
    one = foreground_probabilities(torch.zeros(2, 1, 4, 4), LabelSpec())
    assert one.shape == (2, 1, 4, 4) and torch.allclose(one, torch.full_like(one, 0.5))
    three = foreground_probabilities(torch.zeros(2, 3, 4, 4), LabelSpec.for_outputs(3))
    assert three.shape == (2, 2, 4, 4) and torch.allclose(three, torch.full_like(three, 1 / 3))


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_stitched_map_reproduces_the_slide_pixel_for_pixel(tmp_path: Path, overlap: float) -> None:
    slide = make_slide(tmp_path / "s.tif")
    ckpt = make_ckpt()
    settings = PredictSettings(overlap=overlap, tissue_mask=False, float16=True, chunk_tiles=3, batch_size=5)
    pred = predict_slide(RedChannel(), ckpt, slide, tmp_path / "work", settings)
    got = np.asarray(pred.map.channels[0][:]).astype(np.float32)
    red = tifffile.imread(slide)[..., 0].astype(np.float32)
    expected = 1 / (1 + np.exp(-(red / 255 - 0.5) / 0.25))
    assert got.shape == red.shape == pred.map.shape
    np.testing.assert_allclose(got, expected, atol=2e-3)
    assert pred.pixels_read is not None and pred.pixels_read > 0


def test_tissue_mask_limits_the_tiles_and_empty_tissue_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ckpt = make_ckpt()
    model = prepare_model(ckpt, "cpu")
    full = predict_slide(
        model, ckpt, make_slide(tmp_path / "a.tif"), tmp_path / "w1", PredictSettings(tissue_mask=False)
    )
    masked = predict_slide(model, ckpt, make_slide(tmp_path / "a.tif"), tmp_path / "w2", PredictSettings())
    assert 0 < masked.tiling.n_tiles < full.tiling.n_tiles
    values = np.asarray(masked.map.channels[0][:])
    assert values[:20, :20].max() == 0 and values[100:150, 100:200].min() > 0  # glass corner empty, tissue covered
    with caplog.at_level(logging.WARNING):
        empty = predict_slide(model, ckpt, make_slide(tmp_path / "b.tif", tissue=False), tmp_path / "w3")
    assert empty.tiling.n_tiles == 0 and np.asarray(empty.map.channels[0][:]).max() == 0
    assert "no tissue" in caplog.text


def test_out_mpp_coarser_map(tmp_path: Path) -> None:
    ckpt = make_ckpt()
    settings = PredictSettings(tissue_mask=False, out_mpp=2.0, float16=True)
    pred = predict_slide(RedChannel(), ckpt, make_slide(tmp_path / "s.tif"), tmp_path / "w", settings)
    assert pred.map.shape == (128, 160) and pred.map.mpp == 2.0
    red = tifffile.imread(tmp_path / "s.tif")[..., 0].astype(np.float32)
    expected = (1 / (1 + np.exp(-(red / 255 - 0.5) / 0.25))).reshape(128, 2, 160, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(np.asarray(pred.map.channels[0][:]).astype(np.float32), expected, atol=5e-3)


def test_multiclass_writes_each_foreground_class(tmp_path: Path) -> None:
    ckpt = make_ckpt("unet", (1.0,), classes=3)
    pred = predict_slide(
        prepare_model(ckpt, "cpu"), ckpt, make_slide(tmp_path / "s.tif"), tmp_path / "w", PredictSettings(float16=True)
    )
    assert len(pred.map.channels) == 2


def test_slide_coarser_than_the_model_is_refused(tmp_path: Path) -> None:
    ckpt = make_ckpt()
    with pytest.raises(SlideError, match=r"coarser than the model"):
        predict_slide(RedChannel(), ckpt, make_slide(tmp_path / "s.tif", mpp=1.1), tmp_path / "w")
    # within the 2 % tolerance is accepted
    predict_slide(RedChannel(), ckpt, make_slide(tmp_path / "t.tif", mpp=1.015), tmp_path / "w2")


def test_slide_without_mpp_needs_an_override(tmp_path: Path) -> None:
    path = tmp_path / "nompp.tif"
    image = np.full((256, 320, 3), 255, np.uint8)
    tifffile.imwrite(path, image, tile=(64, 64), photometric="rgb")
    ckpt = make_ckpt()
    with pytest.raises(MissingMppError):
        predict_slide(RedChannel(), ckpt, path, tmp_path / "w")
    pred = predict_slide(RedChannel(), ckpt, path, tmp_path / "w2", PredictSettings(mpp=1.0, tissue_mask=False))
    assert pred.slide_mpp == 1.0 and pred.tiling.n_tiles > 0


def test_unreadable_region_names_slide_and_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mrseg.wsi.concentric

    def broken(*args: object, **kwargs: object) -> np.ndarray:
        raise OSError("corrupt tile")

    monkeypatch.setattr(mrseg.wsi.concentric, "read_concentric_grid", broken)
    slide = make_slide(tmp_path / "bad.tif")
    with pytest.raises(SlideError, match=r"bad\.tif: region unreadable near level-0 box \(0, 0, .*corrupt tile"):
        predict_slide(RedChannel(), make_ckpt(), slide, tmp_path / "w", PredictSettings(tissue_mask=False))


def test_bad_settings_and_devices() -> None:
    with pytest.raises(ConfigError):
        PredictSettings(overlap=1.0)
    with pytest.raises(ConfigError):
        PredictSettings(batch_size=0)
    with pytest.raises(ConfigError, match="ramp"):
        PredictSettings(ramp="cosine")
    with pytest.raises(ConfigError, match="precision"):
        PredictSettings(precision="fp8")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            prepare_model(make_ckpt(), "cuda")
    assert "device" not in PredictSettings().identity()
