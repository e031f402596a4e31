"""Tests of the ``mrseg models`` and ``mrseg export`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from mrseg.cli import app
from mrseg.core.input_spec import InputSpec
from mrseg.models import create_model
from mrseg.models.checkpoint import make_checkpoint, save_checkpoint
from mrseg.models.profile import profile_model

runner = CliRunner()


def test_models_json() -> None:
    result = runner.invoke(
        app, ["models", "--size", "64", "--mpps", "0.5", "1", "2", "--width", "4", "--depth", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["unet", "mrn_bilinear", "mrn_transposed"]
    for row in rows:
        assert {"name", "params", "gflops", "input_shape", "output_shape"} <= set(row)
        assert row["output_shape"] == [1, 1, 64, 64]
    assert rows[0]["input_shape"] == [1, 1, 3, 64, 64] and rows[0]["mpps"] == [0.5]
    assert rows[1]["input_shape"] == [1, 3, 3, 64, 64]
    expected = profile_model(create_model("mrn_bilinear", mpps=[0.5, 1, 2], width=4, depth=2), 64, device="cpu")
    assert rows[1]["params"] == expected.params
    assert rows[1]["gflops"] == expected.gflops
    assert rows[1]["saved_bytes"] == expected.saved_bytes
    assert rows[0]["gflops"] < rows[1]["gflops"] < rows[2]["gflops"]


def test_models_mpps_forms_agree() -> None:
    base = ["models", "--size", "32", "--width", "2", "--depth", "1", "--json"]
    a = runner.invoke(app, [*base, "--mpps", "0.5", "2"])
    b = runner.invoke(app, [*base, "--mpps", "0.5,2"])
    c = runner.invoke(app, [*base, "--mpps", "0.5", "--mpps", "2"])
    assert a.exit_code == b.exit_code == c.exit_code == 0, a.output
    assert json.loads(a.stdout) == json.loads(b.stdout) == json.loads(c.stdout)


def test_models_table() -> None:
    result = runner.invoke(app, ["models", "--size", "32", "--mpps", "1", "2", "--width", "2", "--depth", "1"])
    assert result.exit_code == 0, result.output
    assert "mrn_transposed" in result.stdout and "GFLOPs" in result.stdout


def test_models_refuses_bad_size_and_mpps() -> None:
    result = runner.invoke(app, ["models", "--size", "100", "--mpps", "0.5", "1", "2", "4"])
    assert result.exit_code == 1
    assert "multiple of 128" in result.output and "128, 256" in result.output
    result = runner.invoke(app, ["models", "--size", "128", "--mpps", "0.5", "1.5"])
    assert result.exit_code == 1 and "power of two" in result.output
    result = runner.invoke(app, ["models", "--mpps", "a"])
    assert result.exit_code == 1 and "numbers" in result.output


def test_export_torchscript(tmp_path: Path) -> None:
    model = create_model("mrn_bilinear", mpps=[0.5, 1.0], width=2, depth=1).eval()
    ckpt = save_checkpoint(tmp_path / "c.pt", make_checkpoint(model, InputSpec((0.5, 1.0), 16)))
    out = tmp_path / "m.ts"
    result = runner.invoke(app, ["export", str(ckpt), "--format", "torchscript", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "max abs diff" in result.stdout
    x = torch.randn(2, 2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(out))(x), model(x), atol=1e-5, rtol=0)


def test_export_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", str(tmp_path / "none.pt"), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1 and "not found" in result.output
    model = create_model("unet", mpps=[0.5], width=2, depth=1)
    ckpt = save_checkpoint(tmp_path / "c.pt", make_checkpoint(model, InputSpec((0.5,), 8)))
    result = runner.invoke(app, ["export", str(ckpt), "--format", "tflite", "--out", str(tmp_path / "m")])
    assert result.exit_code == 1 and "unknown --format" in result.output


def test_models_per_j() -> None:
    result = runner.invoke(
        app, ["models", "--size", "32", "--mpps", "1", "2", "--width", "2", "--depth", "1", "--per-j", "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["name"], r["encoder"], r["j"], r["mpps"]) for r in rows] == [
        ("unet", "unet", 1, [1.0]),
        ("mrn_bilinear", "unet", 2, [1.0, 2.0]),
        ("mrn_transposed", "unet", 2, [1.0, 2.0]),
    ]
