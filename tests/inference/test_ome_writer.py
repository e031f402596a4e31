"""The ``ome`` writer: pyramidal OME-TIFF maps (SubIFDs, physical pixel size), read back by ome-types and tifffile."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mrseg.core.label_spec import LabelSpec
from mrseg.core.prediction_record import read_prediction_record
from mrseg.inference.runner import run_slide
from mrseg.inference.settings import PredictSettings
from mrseg.inference.writers.ome import write_ome_tiff
from mrseg.wsi.tiff import pyramid_shapes

ome_types = pytest.importorskip("ome_types", reason="ome-types reads the OME-XML back (pip install ome-types)")


def read_ome(path: Path) -> tuple[object, list[np.ndarray], list[int]]:
    """(OME model parsed by ome-types, levels as (C, h, w) arrays, SubIFD count of each top-level page)."""
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome and len(tif.series) == 1
        ome = ome_types.from_xml(tif.ome_metadata)
        series = tif.series[0]
        levels = [np.asarray(level.asarray()).reshape(level.shape if level.ndim == 3 else (1, *level.shape))
                  for level in series.levels]  # fmt: skip
    with tifffile.TiffFile(path) as tif:
        tif.pages.useframes = False  # full pages (with their tags), not frames
        pages = [tif.pages[i] for i in range(len(tif.pages))]
        subifds = [len(p.tags["SubIFDs"].value) if "SubIFDs" in p.tags else 0 for p in pages]  # type: ignore[union-attr]
    return ome, levels, subifds


def test_pyramid_physical_size_and_channels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (700, 600), dtype=np.uint8)
    b = np.ascontiguousarray(a[::-1])
    path = write_ome_tiff(tmp_path / "m.ome.tif", [a, b], 0.5, channels=["tumor", "lymphoid"], name="m")
    ome, levels, subifds = read_ome(path)
    pixels = ome.images[0].pixels  # type: ignore[attr-defined]
    assert ome.images[0].name == "m"  # type: ignore[attr-defined]
    assert (pixels.physical_size_x, pixels.physical_size_y) == (0.5, 0.5)
    assert pixels.physical_size_x_unit.value == "µm" and pixels.physical_size_y_unit.value == "µm"
    assert (pixels.size_c, pixels.size_y, pixels.size_x, pixels.type.value) == (2, 700, 600, "uint8")
    assert [c.name for c in pixels.channels] == ["tumor", "lymphoid"]
    assert [lv.shape[1:] for lv in levels] == pyramid_shapes(700, 600)  # 700x600, 350x300, 175x150
    assert subifds == [2, 2]  # each channel's plane holds its reduced levels as SubIFDs
    np.testing.assert_array_equal(levels[0][0], a)
    np.testing.assert_array_equal(levels[0][1], b)
    quads = a.reshape(350, 2, 300, 2).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(levels[1][0] - quads).max() <= 0.5  # 2x2 means
    labels = rng.integers(0, 3, (300, 300), dtype=np.uint8)
    _, label_levels, _ = read_ome(
        write_ome_tiff(tmp_path / "l.ome.tif", [labels], 2.0, channels=["label"], name="l", downsample="nearest")
    )
    np.testing.assert_array_equal(label_levels[1][0], labels[::2, ::2])  # nearest: still labels


def test_float16_maps_are_widened_to_float32(tmp_path: Path) -> None:
    values = np.random.default_rng(1).random((40, 50)).astype(np.float16)
    ome, levels, _ = read_ome(write_ome_tiff(tmp_path / "f.ome.tif", [values], 1.0, channels=["tumor"], name="f"))
    assert ome.images[0].pixels.type.value == "float"  # type: ignore[attr-defined]
    np.testing.assert_array_equal(levels[0][0], values.astype(np.float32))
    with pytest.raises(ValueError, match="2 planes for 1 channel names"):
        write_ome_tiff(tmp_path / "x.ome.tif", [values, values], 1.0, channels=["a"], name="x")


def test_predict_writes_ome_maps(
    tmp_path: Path,
    slide_file: Callable[..., Path],
    checkpoint_file: Path,
    three_class_file: Path,
    three_classes: LabelSpec,
) -> None:
    slide = slide_file()  # 320 x 256 px at 1 µm/px
    out = tmp_path / "binary"
    run_slide(checkpoint_file, slide, out, PredictSettings(writers=("tiff", "ome")))
    record = read_prediction_record(out / "s.json")
    ome, levels, _ = read_ome(record.output("ome"))
    pixels = ome.images[0].pixels  # type: ignore[attr-defined]
    assert pixels.physical_size_x == pytest.approx(record.map_mpp) and [c.name for c in pixels.channels] == ["tumor"]
    np.testing.assert_array_equal(levels[0][0], tifffile.imread(record.map_path))  # the same map as <stem>.tif
    assert record.raw["writers"]["ome"] == {"channels": ["tumor"]}
    out = tmp_path / "three"
    run_slide(three_class_file, slide, out, PredictSettings(writers=("tiff", "labels", "ome")))
    record = read_prediction_record(out / "s.json")
    assert {"ome", "ome_labels"} <= set(record.outputs)
    ome, levels, _ = read_ome(record.output("ome"))
    assert [c.name for c in ome.images[0].pixels.channels] == list(three_classes.foreground)  # type: ignore[attr-defined]
    for k in (1, 2):
        np.testing.assert_array_equal(levels[0][k - 1], tifffile.imread(record.class_map_path(k)))
    _, label_levels, _ = read_ome(record.output("ome_labels"))
    assert record.label_map_path is not None
    np.testing.assert_array_equal(label_levels[0][0], tifffile.imread(record.label_map_path))
