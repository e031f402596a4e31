"""Whole-slide prediction: pixel alignment of stitched outputs, tissue, out_mpp, multi-class, and bad inputs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from mrseg.core.errors import ConfigError, MissingMppError, SlideError
from mrseg.core.label_spec import LabelSpec
from mrseg.core.tissue_spec import TissueSettings
from mrseg.inference.inferer import plan_slide, predict_slide
from mrseg.inference.predictor import Predictor, prepare_model
from mrseg.inference.settings import PredictSettings
from mrseg.models.activation import foreground_probabilities
from mrseg.models.checkpoint import Checkpoint
from mrseg.wsi.slide import Slide
from mrseg.wsi.tiff import write_pyramidal_tiff

SlideFactory = Callable[..., Path]
CheckpointFactory = Callable[..., Checkpoint]


class RedChannel(nn.Module):
    """Logit = normalised red channel of the finest patch: the map must reproduce the slide pixel for pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, 0:1]


def test_probabilities_of_binary_and_multiclass_logits() -> None:
    one = foreground_probabilities(torch.zeros(2, 1, 4, 4), LabelSpec())
    assert one.shape == (2, 1, 4, 4) and torch.allclose(one, torch.full_like(one, 0.5))
    three = foreground_probabilities(torch.zeros(2, 3, 4, 4), LabelSpec.for_outputs(3))
    assert three.shape == (2, 2, 4, 4) and torch.allclose(three, torch.full_like(three, 1 / 3))


def test_predictor_pre_and_post_processing(make_ckpt: CheckpointFactory) -> None:
    ckpt = make_ckpt()
    predictor = Predictor(RedChannel(), ckpt.input_spec, ckpt.labels, out_size_px=16)
    patches = np.full((2, 3, 32, 32, 3), 255, np.uint8)
    out = predictor(patches)
    assert out.shape == (2, 1, 16, 16) and out.dtype == np.float32  # area-resampled to the map's resolution
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-(1.0 - 0.5) / 0.25)), rtol=1e-5)  # white, mean 0.5, std 0.25


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_stitched_map_reproduces_the_slide_pixel_for_pixel(
    tmp_path: Path, slide_file: SlideFactory, make_ckpt: CheckpointFactory, overlap: float
) -> None:
    slide = slide_file()
    settings = PredictSettings(overlap=overlap, tissue_mask=False, float16=True, chunk_tiles=3, batch_size=5)
    pred = predict_slide(RedChannel(), make_ckpt(), slide, tmp_path / "work", settings)
    got = np.asarray(pred.map.channels[0][:]).astype(np.float32)
    red = tifffile.imread(slide)[..., 0].astype(np.float32)
    expected = 1 / (1 + np.exp(-(red / 255 - 0.5) / 0.25))
    assert got.shape == red.shape == pred.map.shape
    np.testing.assert_allclose(got, expected, atol=2e-3)
    assert pred.pixels_read is not None and pred.pixels_read > 0


def test_tissue_mask_limits_the_tiles_and_empty_tissue_warns(
    tmp_path: Path, slide_file: SlideFactory, make_ckpt: CheckpointFactory, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt = make_ckpt()
    model = prepare_model(ckpt, "cpu")
    slide = slide_file("a.tif")
    full = predict_slide(model, ckpt, slide, tmp_path / "w1", PredictSettings(tissue_mask=False))
    with Slide.open(slide) as handle:  # an open handle is used as it is
        masked = predict_slide(model, ckpt, handle, tmp_path / "w2", PredictSettings())
    assert 0 < masked.tiling.n_tiles < full.tiling.n_tiles
    values = np.asarray(masked.map.channels[0][:])
    assert values[:20, :20].max() == 0 and values[100:150, 100:200].min() > 0  # glass corner empty, tissue covered
    with caplog.at_level(logging.WARNING):
        empty = predict_slide(model, ckpt, slide_file("b.tif", tissue=False), tmp_path / "w3")
    assert empty.tiling.n_tiles == 0 and np.asarray(empty.map.channels[0][:]).max() == 0
    assert "no tissue" in caplog.text


def test_tissue_settings_come_from_the_checkpoint_unless_overridden(
    slide_file: SlideFactory, make_ckpt: CheckpointFactory
) -> None:
    ckpt = make_ckpt()
    coarse = replace(ckpt, tissue=TissueSettings(mpp=32.0, min_object_um2=0.0))
    with Slide.open(slide_file()) as slide:
        default = plan_slide(slide, ckpt.input_spec, PredictSettings(), PredictSettings().tissue_settings(ckpt.tissue))
        trained = PredictSettings().tissue_settings(coarse.tissue)
        assert trained.mpp == 32.0
        from_checkpoint = plan_slide(slide, ckpt.input_spec, PredictSettings(), trained)
        overridden = PredictSettings(tissue_mpp=8.0).tissue_settings(coarse.tissue)
        assert overridden == replace(coarse.tissue, mpp=8.0)  # type: ignore[arg-type]
    assert default.tiling.n_tiles != from_checkpoint.tiling.n_tiles  # a 32 um/px mask is blockier


def test_out_mpp_coarser_map(tmp_path: Path, slide_file: SlideFactory, make_ckpt: CheckpointFactory) -> None:
    settings = PredictSettings(tissue_mask=False, out_mpp=2.0, float16=True)
    slide = slide_file()
    pred = predict_slide(RedChannel(), make_ckpt(), slide, tmp_path / "w", settings)
    assert pred.map.shape == (128, 160) and pred.map.mpp == 2.0
    red = tifffile.imread(slide)[..., 0].astype(np.float32)
    expected = (1 / (1 + np.exp(-(red / 255 - 0.5) / 0.25))).reshape(128, 2, 160, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(np.asarray(pred.map.channels[0][:]).astype(np.float32), expected, atol=5e-3)
    with pytest.raises(ConfigError, match="finer than the model"):
        predict_slide(RedChannel(), make_ckpt(), slide, tmp_path / "w2", PredictSettings(out_mpp=0.5))


def test_multiclass_merges_each_foreground_class(
    tmp_path: Path, slide_file: SlideFactory, make_ckpt: CheckpointFactory
) -> None:
    ckpt = make_ckpt("unet", (1.0,), LabelSpec.for_outputs(3))
    pred = predict_slide(prepare_model(ckpt, "cpu"), ckpt, slide_file(), tmp_path / "w", PredictSettings(float16=True))
    assert len(pred.map.channels) == 2


def test_slide_coarser_than_the_model_is_refused(
    tmp_path: Path, slide_file: SlideFactory, make_ckpt: CheckpointFactory
) -> None:
    ckpt = make_ckpt()
    with pytest.raises(SlideError, match=r"coarser than the model"):
        predict_slide(RedChannel(), ckpt, slide_file("s.tif", mpp=1.1), tmp_path / "w")
    # within the 2 % tolerance is accepted
    predict_slide(RedChannel(), ckpt, slide_file("t.tif", mpp=1.015), tmp_path / "w2")


def test_slide_without_mpp_needs_an_override(
    tmp_path: Path, slide_file: SlideFactory, make_ckpt: CheckpointFactory
) -> None:
    path = slide_file("nompp.tif", mpp=None)
    ckpt = make_ckpt()
    with pytest.raises(MissingMppError):
        predict_slide(RedChannel(), ckpt, path, tmp_path / "w")
    settings = PredictSettings(slide_mpp=1.0, tissue_mask=False)
    pred = predict_slide(RedChannel(), ckpt, path, tmp_path / "w2", settings)
    assert pred.slide_mpp == 1.0 and pred.tiling.n_tiles > 0


def test_unreadable_region_names_slide_and_location(tmp_path: Path, make_ckpt: CheckpointFactory) -> None:
    """Level 0's tile data are garbage: the slide opens (its coarsest level is fine), reading tiles fails."""
    image = np.full((256, 320, 3), 200, np.uint8)
    good = write_pyramidal_tiff(tmp_path / "good.tif", image, 1.0, compression="zlib", min_size=64)
    with tifffile.TiffFile(good) as tif:
        offsets = tif.pages.first.dataoffsets
    data = bytearray(good.read_bytes())
    for off in offsets:
        data[off : off + 16] = b"\xff" * 16  # garbage zlib streams
    bad = tmp_path / "bad.tif"
    bad.write_bytes(bytes(data))
    settings = PredictSettings(tissue_mask=False, backend="tiffslide")
    with pytest.raises(SlideError, match=r"bad\.tif: region unreadable near level-0 box \(0, 0, "):
        predict_slide(RedChannel(), make_ckpt(), bad, tmp_path / "w", settings)


def test_unknown_and_unavailable_devices(make_ckpt: CheckpointFactory) -> None:
    with pytest.raises(ConfigError, match="expected auto"):
        prepare_model(make_ckpt(), "tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            prepare_model(make_ckpt(), "cuda")
    assert prepare_model(make_ckpt(), "auto").device.type in ("cpu", "cuda", "mps")


def test_map_chunks_are_finished_as_their_last_tile_arrives(
    tmp_path: Path, slide_file: SlideFactory, make_ckpt: CheckpointFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merger is told every tile: chunks leave memory during the loop, and the map is the same bytes."""
    import mrseg.inference.inferer as inferer
    from mrseg.inference.merger import OnDiskMerger

    slide, ckpt = slide_file(), make_ckpt()
    settings = PredictSettings(tissue_mask=False, float16=True, chunk_tiles=2, batch_size=3)
    reference = predict_slide(RedChannel(), ckpt, slide, tmp_path / "one", settings)  # 512-px chunks: one chunk
    assert reference.map.channels[0].chunks_written == 1
    live: list[int] = []
    add = OnDiskMerger._add

    def spy(self: OnDiskMerger, *args: object) -> None:
        add(self, *args)  # type: ignore[arg-type]
        live.append(len(self._sums))

    monkeypatch.setattr(inferer, "MAP_CHUNK_PX", 64)
    monkeypatch.setattr(OnDiskMerger, "_add", spy)
    pred = predict_slide(RedChannel(), ckpt, slide, tmp_path / "many", settings)
    chunks = pred.map.channels[0].chunks_written
    assert chunks == 4 * 5  # 256 x 320 px at 1 µm/px in 64-px chunks
    assert live[-1] == 0 and max(live) < chunks  # every chunk finished by its last tile, before finalize
    np.testing.assert_array_equal(pred.map.channels[0][:], reference.map.channels[0][:])
