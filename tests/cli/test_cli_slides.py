"""``mrseg info`` and ``mrseg patch`` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mrseg.cli import app
from mrseg.wsi.tiff import write_pyramidal_tiff

runner = CliRunner()


@pytest.fixture()
def slide_path(tmp_path: Path) -> Path:
    image = np.random.default_rng(0).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    return write_pyramidal_tiff(tmp_path / "s.tif", image, 0.25, compression="zlib", tile=64, min_size=64)


def _one_error_line(result: object) -> str:
    output = getattr(result, "stderr", "") or getattr(result, "output", "")
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: ")
    return lines[0]


def test_info_json(slide_path: Path) -> None:
    result = runner.invoke(app, ["info", str(slide_path), "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["path"] == str(slide_path)
    assert facts["backend"] == "openslide"
    assert facts["vendor"] == "generic-tiff"
    assert facts["dimensions"] == [500, 300]
    assert facts["level_count"] == 4
    assert facts["levels"][1] == {"size": [250, 150], "downsample": 2.0, "mpp": 0.5}
    assert facts["mpp"] == pytest.approx(0.25)
    assert facts["associated_images"] == []


def test_info_text_backend_and_override(slide_path: Path) -> None:
    result = runner.invoke(app, ["info", str(slide_path), "--backend", "tiffslide", "--slide-mpp", "0.5"])
    assert result.exit_code == 0, result.output
    assert "tiffslide" in result.stdout
    assert "500 x 300 px at 0.5 um/px" in result.stdout
    assert "3: 63 x 38 px, downsample 8, 4 um/px" in result.stdout


@pytest.mark.realdata
def test_info_real_slides(shared_data: Path) -> None:
    cmu = shared_data / "slides" / "CMU-1-Small-Region.svs"
    facts = json.loads(runner.invoke(app, ["info", str(cmu), "--json"]).stdout)
    assert facts["vendor"] == "aperio" and facts["mpp"] == pytest.approx(0.499)
    assert sorted(facts["associated_images"]) == ["label", "macro", "thumbnail"]
    tcga = shared_data / "slides" / "tcga-cr-7395-01a-01-ts1.svs"
    result = runner.invoke(app, ["info", str(tcga)])  # no mpp: the pixel facts, "mpp unknown"
    assert result.exit_code == 0, result.output
    assert "4443 x 3567 px, mpp unknown (give it with --slide-mpp)" in result.stdout
    assert "1: 2221 x 1783 px, downsample 2, mpp unknown" in result.stdout
    facts = json.loads(runner.invoke(app, ["info", str(tcga), "--json"]).stdout)
    assert facts["mpp"] is None and facts["levels"][1]["mpp"] is None and facts["dimensions"] == [4443, 3567]
    result = runner.invoke(app, ["info", str(tcga), "--slide-mpp", "0.5", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["levels"][1]["mpp"] == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["missing", "directory", "text"])
def test_info_bad_input(tmp_path: Path, kind: str) -> None:
    path = {"missing": tmp_path / "nope.svs", "directory": tmp_path, "text": tmp_path / "notes.svs"}[kind]
    if kind == "text":
        path.write_text("not a slide")
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 1
    assert str(path) in _one_error_line(result)


def test_info_unknown_backend(slide_path: Path) -> None:
    result = runner.invoke(app, ["info", str(slide_path), "--backend", "pillow"])
    assert result.exit_code == 1
    assert "unknown backend" in _one_error_line(result)


@pytest.mark.parametrize(
    "mpp_args",
    [["--mpps", "0.25", "0.5", "1"], ["--mpps", "0.25,0.5,1"], ["--mpps", "0.25", "--mpps", "0.5", "--mpps", "1"]],
)
def test_patch_writes_figure(slide_path: Path, tmp_path: Path, mpp_args: list[str]) -> None:
    out = tmp_path / "figs" / "fig.png"
    args = ["patch", str(slide_path), "--center", "250", "150.5", *mpp_args, "--size", "64", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    image = np.asarray(Image.open(out))
    assert image.shape[1] == 3 * 64 + 2 * 8
    assert image.shape[0] > 64
    assert not list(out.parent.glob(".*tmp*"))  # atomic: no temporary left behind


def test_patch_default_mpps(slide_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "fig.png"
    result = runner.invoke(app, ["patch", str(slide_path), "--center", "10", "10", "--size", "32", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert np.asarray(Image.open(out)).shape[1] == 4 * 32 + 3 * 8


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--mpps", "1", "0.5"], "--mpps must be strictly ascending"),
        (["--mpps", "0.5", "x"], "numbers"),
        (["--mpps", "-1"], "positive"),
        (["--backend", "pillow"], "unknown backend"),
        (["stray"], "unexpected arguments"),
        (["--size", "0"], "size"),
        (["--center", "nan", "3"], "--center"),
    ],
)
def test_patch_bad_input(slide_path: Path, tmp_path: Path, extra: list[str], match: str) -> None:
    out = tmp_path / "fig.png"
    result = runner.invoke(app, ["patch", str(slide_path), "--center", "10", "10", "--out", str(out), *extra])
    assert result.exit_code == 1
    assert match in _one_error_line(result)
    assert not out.exists()


def test_patch_missing_slide(tmp_path: Path) -> None:
    out = tmp_path / "fig.png"
    result = runner.invoke(app, ["patch", str(tmp_path / "x.tif"), "--center", "1", "1", "--out", str(out)])
    assert result.exit_code == 1
    assert "no such file" in _one_error_line(result)
    assert not out.exists()
