"""Inference engines: the folded torch path, ONNX Runtime (cached export) and torch.compile match the model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from mrseg.core.errors import ConfigError
from mrseg.inference.onnx_engine import CACHE_ENV, OnnxPredictor, engine_cache_dir
from mrseg.inference.predictor import CompiledPredictor, InferencePredictor, prepare_for_inference, prepare_model
from mrseg.inference.runner import run_slide
from mrseg.inference.settings import PredictSettings
from mrseg.models.checkpoint import Checkpoint, make_checkpoint, save_checkpoint

CheckpointFactory = Callable[..., Checkpoint]


@pytest.fixture()
def checkpoint(make_ckpt: CheckpointFactory) -> Checkpoint:
    """A tiny MRN whose batch norms are not identities (so folding them is tested)."""
    ckpt = make_ckpt()
    model = ckpt.build_model()
    g = torch.Generator().manual_seed(2)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean = torch.randn(m.num_features, generator=g) * 0.1
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
    return make_checkpoint(model, ckpt.input_spec)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One export cache for the module: the tests export the same network once."""
    folder = tmp_path_factory.mktemp("engine-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(folder))
        yield folder


def _input(ckpt: Checkpoint, n: int = 3) -> torch.Tensor:
    spec = ckpt.input_spec
    return torch.randn(n, len(spec.mpps), 3, spec.size_px, spec.size_px, generator=torch.Generator().manual_seed(0))


def _plain(ckpt: Checkpoint, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return ckpt.build_model().eval()(x)


def test_torch_engine_folds_batch_norm_within_1e5(checkpoint: Checkpoint) -> None:
    x = _input(checkpoint)
    predict = prepare_model(checkpoint, "cpu")
    assert isinstance(predict, InferencePredictor) and predict.channels_last
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in predict.model.modules())  # concat fuser: all folded
    assert (predict(x) - _plain(checkpoint, x)).abs().max() <= 1e-5
    unfolded = prepare_for_inference(checkpoint.build_model(), fold=False)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in unfolded.model.modules())


def test_onnx_engine_matches_torch_and_caches_its_export(checkpoint: Checkpoint, cache: Path) -> None:
    x = _input(checkpoint)
    first = prepare_model(checkpoint, "cpu", engine="onnx")
    assert isinstance(first, OnnxPredictor) and first.export_s > 0 and first.path.parent == engine_cache_dir()
    assert first.channels_last is False and first.device == torch.device("cpu")
    assert engine_cache_dir() == cache / "onnx" and list(engine_cache_dir().glob("*.onnx")) == [first.path]
    assert (first(x) - _plain(checkpoint, x)).abs().max() <= 1e-4
    again = prepare_model(checkpoint, "cpu", engine="onnx")
    assert again.path == first.path and again.export_s == 0.0  # from the cache


def test_onnx_engine_refusals(checkpoint: Checkpoint) -> None:
    with pytest.raises(ConfigError, match="fp32"):
        prepare_model(checkpoint, "cpu", precision="bf16", engine="onnx")
    with pytest.raises(ConfigError, match="unknown engine"):
        prepare_model(checkpoint, "cpu", engine="tensorrt")
    with pytest.raises(ConfigError, match="engine must be one of"):
        PredictSettings(engine="tensorrt")


def test_compile_engine_pads_the_last_batch(checkpoint: Checkpoint) -> None:
    # Inductor takes minutes here; the eager backend runs the same wrapper (dynamo tracing, no code generation).
    model = checkpoint.build_model().eval()
    predict = CompiledPredictor(model, "fp32", True, torch.device("cpu"), backend="eager")
    assert isinstance(prepare_for_inference(checkpoint.build_model(), compile_model=True), CompiledPredictor)
    x = _input(checkpoint, n=4)
    expected = _plain(checkpoint, x)
    assert (predict(x) - expected).abs().max() <= 1e-4 and predict.compile_s is not None
    assert predict(x[:3]).shape == (3, 1, 32, 32)  # padded to the first batch's size, not recompiled
    assert (predict(x[:3]) - expected[:3]).abs().max() <= 1e-4


def test_engines_give_the_same_map_within_one_level(
    tmp_path: Path, slide_file: Callable[..., Path], checkpoint: Checkpoint, cache: Path
) -> None:
    ckpt_path = save_checkpoint(tmp_path / "m.pt", checkpoint)
    maps = {}
    for engine in ("torch", "onnx"):
        out = tmp_path / engine
        run_slide(ckpt_path, slide_file(), out, PredictSettings(engine=engine, writers=("tiff",), batch_size=4))
        maps[engine] = tifffile.imread(out / "s.tif").astype(np.int16)
    assert np.abs(maps["torch"] - maps["onnx"]).max() <= 1
