"""Label schemes of the synthetic data set (mrseg.synth.labels): multi-class masks and ASAP XML agree,
every class is present where the layout puts it, and the binary output and the slides do not change."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import defusedxml.ElementTree as DET
import numpy as np
import pytest
import shapely
import tifffile
from scipy import ndimage
from shapely.geometry import Polygon, box, shape
from typer.testing import CliRunner

from mrseg.cli import app
from mrseg.core.errors import ConfigError
from mrseg.synth import SynthParams, generate
from mrseg.synth.labels import GROUP_LABELS, MULTICLASS_CLASSES, hole_free_parts
from mrseg.synth.raster import rasterize
from mrseg.wsi.annotations import load_annotations
from mrseg.wsi.manifest import discover

SIZE = 1536
PARAMS = SynthParams(p_lumen=1.0)  # every large lesion has a lumen: the cut-outs are exercised
MULTICLASS_MAP = {"tumour": 1, "lymphoid": 2, "other": 3}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same slide (seed 0) with binary and with multi-class labels."""
    root = tmp_path_factory.mktemp("labels")
    binary = generate(root / "binary", 1, 0, size_px=SIZE, params=PARAMS).parent
    multi = generate(root / "multi", 1, 0, size_px=SIZE, params=PARAMS, labels="multiclass").parent
    return binary, multi


def _mask(out: Path) -> np.ndarray:
    return tifffile.imread(out / "masks" / "synth_000_mask.tif", key=0)


def _groups(out: Path) -> set[str]:
    root = DET.parse(out / "annotations" / "synth_000.xml").getroot()
    return {ann.get("PartOfGroup") for ann in root.iter("Annotation")}


def _kinds(out: Path) -> dict[str, list[Polygon]]:
    data = json.loads((out / "layouts" / "synth_000.geojson").read_text())
    kinds: dict[str, list[Polygon]] = {}
    for feat in data["features"]:
        kinds.setdefault(feat["properties"]["kind"], []).append(shape(feat["geometry"]))
    return kinds


def test_multiclass_mask_and_annotation_agree(pair: tuple[Path, Path]) -> None:
    _, multi = pair
    assert _groups(multi) == {"tumour", "lymphoid", "other"}
    mask = _mask(multi)
    assert set(np.unique(mask)) == {0, 1, 2, 3}
    with load_annotations(multi / "annotations" / "synth_000.xml", label_map=MULTICLASS_MAP) as ann:
        assert ann.labels == (1, 2, 3)
        got = ann.rasterize((0.0, 0.0, float(SIZE), float(SIZE)), (SIZE, SIZE))
    differ = got != mask
    edges = np.zeros_like(differ)
    for label in range(4):
        region = mask == label
        edges |= ndimage.binary_dilation(region) & ~ndimage.binary_erosion(region)
    assert not (differ & ~edges).any()  # a centre exactly on a rounded edge may go either way
    assert differ.sum() <= 1e-4 * mask.size
    with tifffile.TiffFile(multi / "masks" / "synth_000_mask.tif") as tif:
        for page in tif.pages:  # reduced levels by nearest neighbour: still labels
            assert set(np.unique(page.asarray())) <= {0, 1, 2, 3}


def test_multiclass_labels_follow_the_layout(pair: tuple[Path, Path]) -> None:
    _, multi = pair
    mask, kinds = _mask(multi), _kinds(multi)
    lumens = shapely.union_all(kinds["lumen"]).buffer(2)

    def inside(geoms: list[Polygon], margin: float = 2.0) -> np.ndarray:
        core = shapely.union_all([g.buffer(-margin) for g in geoms]).difference(lumens)
        return rasterize(core, mask.shape)

    assert kinds["mimic"] and kinds["mantle"] and kinds["lumen"]
    assert (mask[inside(kinds["tumour"] + kinds.get("focus", []))] == 1).all()
    assert (mask[inside(kinds["mimic"])] == 2).all()  # germinal-centre-like mimics are lymphoid
    assert (mask[inside(kinds["mantle"])] == 2).all()
    assert (mask[inside(kinds.get("follicle", []))] == 2).all()
    lumen_core = rasterize(shapely.union_all([lum.buffer(-2) for lum in kinds["lumen"]]), mask.shape)
    assert (mask[lumen_core] == 3).all()  # lumens are other tissue, in tumour nests and mimics alike
    tissue = rasterize(shapely.union_all(kinds["tissue"]), mask.shape)
    assert (mask[~ndimage.binary_dilation(tissue, iterations=2)] == 0).all()  # glass
    assert (mask[ndimage.binary_erosion(tissue, iterations=2)] > 0).all()  # all tissue has a class


def test_binary_output_and_slides_unchanged(pair: tuple[Path, Path], tmp_path: Path) -> None:
    binary, multi = pair
    assert _groups(binary) <= {"_0", "_2"}
    default = generate(tmp_path / "default", 1, 0, size_px=SIZE, params=PARAMS, labels="binary").parent
    for rel in ("slides/synth_000.tif", "masks/synth_000_mask.tif", "annotations/synth_000.xml", "synth.json"):
        assert (default / rel).read_bytes() == (binary / rel).read_bytes()
    for rel in ("slides/synth_000.tif", "layouts/synth_000.geojson"):  # the scheme changes labels only
        assert (binary / rel).read_bytes() == (multi / rel).read_bytes()
    np.testing.assert_array_equal(_mask(binary) == 1, _mask(multi) == 1)  # tumour is the same class
    assert set(np.unique(_mask(binary))) == {0, 1}


def test_scheme_recorded(pair: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    binary, multi = pair
    meta = json.loads((multi / "synth.json").read_text())
    assert meta["labels"] == {"scheme": "multiclass", "classes": list(MULTICLASS_CLASSES), "groups": MULTICLASS_MAP}
    counts = meta["slides"][0]["class_pixels"]
    assert sum(counts.values()) == SIZE * SIZE and min(counts.values()) > 0
    assert counts["tumour"] == meta["slides"][0]["tumour_pixels"]
    assert "labels" not in json.loads((binary / "synth.json").read_text())  # binary: as before
    with open(multi / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["labels"] == "multiclass"
    with caplog.at_level(logging.WARNING):
        records = discover(multi)
    assert len(records) == 1 and "unknown column" not in caplog.text
    assert (binary / "manifest.csv").read_text().splitlines()[0] == "slide,annotation,mask,split"
    assert {GROUP_LABELS[g] for g in MULTICLASS_MAP} == {1, 2, 3}


def test_bad_scheme_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="labels must be one of binary, multiclass"):
        generate(tmp_path / "out", 1, 0, size_px=512, labels="three")  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "cli"), "-n", "1", "--size", "512", "--labels", "x"])
    assert result.exit_code == 1 and "labels must be one of" in result.output


def test_cli_multiclass(tmp_path: Path) -> None:
    args = ["synth", str(tmp_path / "o"), "-n", "1", "--size", "512", "--labels", "multiclass"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "synth.json").read_text())["labels"]["scheme"] == "multiclass"


def test_hole_free_parts() -> None:
    outer = box(0, 0, 100, 60).union(box(200, 0, 260, 40))
    holes = [box(10, 10, 20, 20), box(15, 30, 40, 50), box(60.25, 5, 70, 55), box(210, 10, 220, 30)]
    geom = outer.difference(shapely.union_all(holes))
    assert sum(len(p.interiors) for p in shapely.get_parts(geom)) == 4
    pieces = hole_free_parts(geom)
    assert pieces and all(not p.interiors for p in pieces)
    assert sum(p.area for p in pieces) == pytest.approx(geom.area)
    assert shapely.union_all(pieces).symmetric_difference(geom).area < 1e-6
    assert hole_free_parts(box(0, 0, 1, 1)) == [box(0, 0, 1, 1)]
