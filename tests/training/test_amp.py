"""Mixed precision in training (``train.amp``): where it runs, and bf16 autocast on a CPU that has it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

import mrseg.training.state as state
from mrseg.core.device import native_bf16
from mrseg.training.config import load_config
from mrseg.training.loop import train
from mrseg.training.runlog import read_metrics
from training_data import make_dataset, tiny_overrides

CPU = torch.device("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_only_where_it_is_native(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, native: bool
) -> None:
    monkeypatch.setattr(state, "native_bf16", lambda device: native)
    caplog.set_level(logging.WARNING, logger="mrseg.training.state")
    config = load_config(None, ["train.amp=bf16"])
    assert state.amp_dtype(config, CPU) is (torch.bfloat16 if native else None)
    assert ("needs CUDA or a CPU with native bf16" in caplog.text) is not native
    caplog.clear()
    assert state.amp_dtype(load_config(None, ["train.amp=fp16"]), CPU) is None  # fp16 needs CUDA, always
    assert "train.amp=fp16 needs CUDA; training in float32" in caplog.text
    assert state.amp_dtype(load_config(None), CPU) is None


@pytest.mark.skipif(not native_bf16(), reason="this CPU has no native bf16 (AVX512-BF16 or AMX)")
def test_bf16_training_on_a_native_cpu_differs_from_float32_and_learns(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", 4)
    runs = {}
    for amp in ("none", "bf16"):
        config = load_config(None, tiny_overrides(data, **{"train.amp": amp, "train.epochs": 3}))
        result = train(config, tmp_path / amp, device="cpu")
        runs[amp] = (result, read_metrics(tmp_path / amp / "metrics.csv"))
    (fp32, fp32_rows), (bf16, bf16_rows) = runs["none"], runs["bf16"]
    losses = [r.train_loss for r in bf16_rows]
    assert all(0.0 < x < 5.0 for x in losses)
    assert [r.train_loss for r in fp32_rows] != losses  # autocast was on: the arithmetic differs
    # the weights stay float32 (what checkpoints store), only the arithmetic is bf16
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    assert bf16.best_val_loss is not None and fp32.best_val_loss is not None
