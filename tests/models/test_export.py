"""Tests of mrseg.models.export: ONNX and TorchScript exports match PyTorch, atomic output, clear errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from mrseg.core.errors import CheckpointError
from mrseg.core.input_spec import InputSpec
from mrseg.models import create_model
from mrseg.models.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from mrseg.models.export import ExportError, export_checkpoint, export_model


def _checkpoint(tmp_path: Path, name: str = "mrn_bilinear", mpps: tuple[float, ...] = (0.5, 1.0)) -> Path:
    torch.manual_seed(0)
    model = create_model(name, mpps=mpps, num_classes=2, width=2, depth=1)
    model.train()
    model(torch.randn(4, len(mpps), 3, 8, 8))  # non-trivial BN running statistics
    ckpt = make_checkpoint(model.eval(), InputSpec(mpps, 8))
    return save_checkpoint(tmp_path / f"{name}.pt", ckpt)


@pytest.mark.parametrize("name", ["unet", "mrn_transposed"])
def test_torchscript_export_matches(tmp_path: Path, name: str) -> None:
    mpps = (0.5,) if name == "unet" else (0.5, 2.0)
    ckpt = _checkpoint(tmp_path, name, mpps)
    result = export_checkpoint(ckpt, tmp_path / "m.ts", format="torchscript")
    assert result.path.is_file() and result.max_abs_diff <= 1e-4
    loaded = torch.jit.load(str(result.path))
    x = torch.randn(3, len(mpps), 3, 8, 8)
    with torch.no_grad():
        expected = load_checkpoint(ckpt).build_model()(x)
        got = loaded(x)
    assert got.shape == (3, 2, 8, 8)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_onnx_export_matches_with_dynamic_batch(tmp_path: Path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")

    ckpt_path = _checkpoint(tmp_path, "mrn_bilinear", (0.5, 1.0))
    out = tmp_path / "sub" / "m.onnx"
    result = export_checkpoint(ckpt_path, out, format="onnx")
    assert result.max_abs_diff <= 1e-4
    assert result.input_shape == (1, 2, 3, 8, 8) and result.output_shape == (3, 2, 8, 8)
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.onnx"]  # no temp or external-data files
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model = load_checkpoint(ckpt_path).build_model()
    for batch in (1, 5):
        x = torch.randn(batch, 2, 3, 8, 8)
        (got,) = session.run(None, {"patches": x.numpy()})
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(got), model(x), atol=1e-4, rtol=0)
    assert max(o.version for o in onnx.load(str(out)).opset_import if o.domain in ("", "ai.onnx")) >= 17


class TracesDifferently(nn.Module):
    """A network whose traced graph adds 1 to what it returns in eager mode (a bad export)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0] + 1.0 if torch.jit.is_tracing() else x[:, 0]


def test_mismatch_leaves_no_file(tmp_path: Path) -> None:
    model = TracesDifferently()
    out = tmp_path / "m.ts"
    with pytest.raises(ExportError, match="differs from PyTorch by 1"):
        export_model(model, out, format="torchscript", input_shape=(1, 1, 3, 8, 8))
    assert list(tmp_path.iterdir()) == []


def test_existing_file_replaced_only_on_success(tmp_path: Path) -> None:
    out = tmp_path / "m.ts"
    out.write_text("old")
    model = create_model("unet", mpps=[0.5], width=2, depth=1)
    export_model(model, out, format="torchscript", input_shape=(1, 1, 3, 8, 8))
    assert out.read_bytes()[:2] == b"PK"  # a TorchScript zip archive


def test_unknown_format(tmp_path: Path) -> None:
    model = create_model("unet", mpps=[0.5], width=2, depth=1)
    with pytest.raises(ExportError, match="unknown export format"):
        export_model(model, tmp_path / "m.x", format="tflite", input_shape=(1, 1, 3, 8, 8))  # type: ignore[arg-type]


def test_missing_onnx_gives_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what Python does for a module that is not installed
    model = create_model("unet", mpps=[0.5], width=2, depth=1)
    with pytest.raises(ExportError, match=r'pip install "mrseg\[onnx\]"'):
        export_model(model, tmp_path / "m.onnx", format="onnx", input_shape=(1, 1, 3, 8, 8))
    assert not (tmp_path / "m.onnx").exists()


def test_bad_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        export_checkpoint(tmp_path / "missing.pt", tmp_path / "m.onnx")
