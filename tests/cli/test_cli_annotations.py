"""Tests of the ``mrseg annotations`` and ``mrseg tissue`` commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mrseg.cli import app
from mrseg.wsi.tiff import write_pyramidal_tiff

runner = CliRunner()

XML = """<?xml version="1.0"?>
<ASAP_Annotations><Annotations>
<Annotation Name="A" Type="Polygon" PartOfGroup="_0"><Coordinates>
<Coordinate Order="0" X="100" Y="100"/><Coordinate Order="1" X="300" Y="100"/>
<Coordinate Order="2" X="300" Y="300"/><Coordinate Order="3" X="100" Y="300"/>
</Coordinates></Annotation>
<Annotation Name="B" Type="Spline" PartOfGroup="_1"><Coordinates>
<Coordinate Order="0" X="400" Y="100"/><Coordinate Order="1" X="500" Y="100"/><Coordinate Order="2" X="500" Y="200"/>
</Coordinates></Annotation>
<Annotation Name="C" Type="Polygon" PartOfGroup="_2"><Coordinates>
<Coordinate Order="0" X="150" Y="150"/><Coordinate Order="1" X="250" Y="150"/>
<Coordinate Order="2" X="250" Y="250"/><Coordinate Order="3" X="150" Y="250"/>
</Coordinates></Annotation>
</Annotations></ASAP_Annotations>
"""


@pytest.fixture()
def xml_file(tmp_path: Path) -> Path:
    path = tmp_path / "case.xml"
    path.write_text(XML)
    return path


def run(*args: str) -> tuple[int, str]:
    """Exit code and output (stdout + stderr) of ``mrseg ARGS``."""
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def run_json(*args: str) -> dict:
    """Parsed JSON stdout of ``mrseg ARGS`` (which must succeed)."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_summary_without_mpp(xml_file: Path) -> None:
    summary = run_json("annotations", str(xml_file), "--json")
    assert summary["kind"] == "asap" and summary["annotations"] == 3
    groups = {g["group"]: g for g in summary["groups"]}
    assert groups["_0"]["count"] == 1 and groups["_1"]["count"] == 1 and groups["_2"]["label"] == -1
    labels = {entry["label"]: entry for entry in summary["labels"]}
    assert labels[1]["count"] == 2
    assert labels[1]["area_l0_px2"] == pytest.approx(200 * 200 - 100 * 100 + 5000)
    assert summary["total_area_mm2"] is None
    assert summary["bounds_l0"] == [100.0, 100.0, 500.0, 300.0]


def test_text_summary_with_mpp(xml_file: Path) -> None:
    code, out = run("annotations", str(xml_file), "--slide-mpp", "0.5")
    assert code == 0, out
    assert "_0" in out and "_2" in out
    assert "0.0087 mm^2" in out  # 35000 px^2 * 0.25 um^2 = 8750 um^2
    code, out = run("annotations", str(xml_file))
    assert "unavailable" in out


def test_overlay_with_slide(tmp_path: Path, xml_file: Path, rgb_tiff: Callable[..., Path]) -> None:
    slide = rgb_tiff(np.full((400, 600, 3), 230, np.uint8), mpp=0.5)
    target = tmp_path / "out" / "ov.png"
    summary = run_json("annotations", str(xml_file), "--slide", str(slide), "--overlay", str(target), "--json")
    assert summary["mpp"] == pytest.approx(0.5)
    assert summary["total_area_mm2"] == pytest.approx(35000 * 0.25 / 1e6)
    assert Path(summary["overlay"]) == target
    picture = np.asarray(Image.open(target))
    assert picture.shape == (400, 600, 3)
    assert (picture[100, 150:250] == (0, 200, 0)).all(axis=-1).any()  # tumour outline (green)
    assert (picture[150, 160:240] == (30, 90, 255)).all(axis=-1).any()  # exclusion outline (blue)
    assert not list(target.parent.glob(".*tmp*"))


def test_default_overlay_path_and_mask_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rgb_tiff: Callable[..., Path]
) -> None:
    slide = rgb_tiff(np.full((400, 600, 3), 230, np.uint8), mpp=0.5)
    labels = np.zeros((100, 150), np.uint8)
    labels[25:50, 25:75] = 1
    mask = write_pyramidal_tiff(tmp_path / "mask.tif", labels, 2.0, compression="zlib", downsample="nearest")
    monkeypatch.chdir(tmp_path)
    summary = run_json("annotations", str(mask), "--slide", str(slide), "--json")
    assert summary["kind"] == "mask"
    assert summary["labels"][0]["area_l0_px2"] == pytest.approx(25 * 50 * 16)
    assert summary["bounds_l0"] == [100.0, 100.0, 300.0, 200.0]
    assert (tmp_path / "mask.overlay.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--overlay", "x.png"], "--overlay needs --slide"),
        (["--slide-mpp", "-1"], "--slide-mpp must be positive"),
    ],
)
def test_bad_options(xml_file: Path, args: list[str], message: str) -> None:
    code, out = run("annotations", str(xml_file), *args)
    assert code == 1 and message in out


def test_bad_files_exit_1_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<ASAP_Annotations>")
    code, out = run("annotations", str(bad))
    assert code == 1 and "error:" in out and "malformed XML" in out
    code, out = run("annotations", str(tmp_path / "missing.geojson"))
    assert code == 1 and "cannot read" in out


def test_tissue_command(tmp_path: Path, rgb_tiff: Callable[..., Path]) -> None:
    image = np.full((400, 400, 3), 245, np.uint8)
    image[100:300, 100:300] = (200, 120, 180)
    slide = rgb_tiff(image, mpp=2.0)  # a 400 um square of tissue
    out_path = tmp_path / "tissue.npz"
    result = run_json("tissue", str(slide), "--tissue-mpp", "8", "--out", str(out_path), "--json")
    assert result["fraction"] == pytest.approx(0.25, abs=0.02)
    assert result["shape"] == [100, 100]
    assert out_path.is_file()
    code, out = run("tissue", str(slide), "--tissue-mpp", "0")
    assert code == 1 and "--tissue-mpp must be positive" in out
