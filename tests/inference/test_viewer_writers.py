"""Writers for other viewers: predicted regions as ASAP XML (``asap``), maps on the level-0 grid (``level0``)."""

from __future__ import annotations

import math
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mrseg.core.encoding import UINT8
from mrseg.core.label_spec import LabelSpec
from mrseg.core.prediction_record import read_prediction_record
from mrseg.inference.merger import ProbabilityMap
from mrseg.inference.runner import run_slide
from mrseg.inference.settings import PredictSettings
from mrseg.inference.writers.asap import exclusion_group, region_groups, write_regions_xml
from mrseg.inference.writers.level0 import encoded_tiles, write_on_slide_grid
from mrseg.wsi.annotations import load_annotations
from mrseg.wsi.geometry import ReadGrid
from mrseg.wsi.slide import Slide

SlideFactory = Callable[..., Path]


def nearest_on_slide(values: np.ndarray, d: float, width: int, height: int) -> np.ndarray:
    """The map pixel containing each level-0 pixel's centre, computed directly (0 outside the map)."""
    rows = np.floor((np.arange(height) + 0.5) / d).astype(int)
    cols = np.floor((np.arange(width) + 0.5) / d).astype(int)
    out = np.zeros((height, width), values.dtype)
    ok_r, ok_c = rows < values.shape[0], cols < values.shape[1]
    out[np.ix_(ok_r, ok_c)] = values[np.ix_(rows[ok_r], cols[ok_c])]
    return out


@pytest.mark.parametrize("out_mpp", [None, 2.0, 3.0])
def test_level0_map_has_the_slides_size_mpp_and_pixels(
    tmp_path: Path, slide_file: SlideFactory, checkpoint_file: Path, out_mpp: float | None
) -> None:
    settings = PredictSettings(tissue_mask=False, out_mpp=out_mpp, writers=("tiff", "level0"))
    assert run_slide(checkpoint_file, slide_file(), tmp_path / "out", settings).status == "done"
    record = read_prediction_record(tmp_path / "out" / "s.json")
    grid_map = tifffile.imread(record.output("map_level0"))
    values = tifffile.imread(record.map_path)
    assert grid_map.shape == (256, 320) and grid_map.dtype == np.uint8
    np.testing.assert_array_equal(grid_map, nearest_on_slide(values, record.map_pixel_l0, 320, 256))
    with Slide.open(record.output("map_level0"), backend="tiffslide") as opened:
        assert opened.dimensions == (320, 256) and opened.mpp == pytest.approx(1.0) and opened.level_count == 2
    level1 = tifffile.imread(record.output("map_level0"), level=1)
    if record.map_pixel_l0 < 2:  # coarser than the map: each pixel averages the 2 x 2 map pixels it covers
        blocks = values.astype(np.float32).reshape(128, 2, 160, 2).mean(axis=(1, 3))
        assert np.abs(level1.astype(np.float32) - blocks).max() <= 0.5
    else:
        np.testing.assert_array_equal(level1, nearest_on_slide(values, record.map_pixel_l0 / 2, 160, 128))


def test_level0_map_of_a_multiclass_task_adds_the_label_map(
    tmp_path: Path, slide_file: SlideFactory, three_class_file: Path
) -> None:
    settings = PredictSettings(tissue_mask=False, writers=("tiff", "labels", "level0"))
    run_slide(three_class_file, slide_file(), tmp_path / "out", settings)
    record = read_prediction_record(tmp_path / "out" / "s.json")
    labels = tifffile.imread(record.output("labels_level0"))
    np.testing.assert_array_equal(labels, nearest_on_slide(tifffile.imread(record.output("labels")), 1.0, 320, 256))


def test_a_large_slide_grid_is_written_in_bounded_memory_with_shared_blank_tiles(tmp_path: Path) -> None:
    values = np.zeros((150, 200), np.uint8)  # a 20000 x 15000 slide, map pixels of 100 level-0 pixels
    values[40:60, 50:90] = 200
    tracemalloc.start()
    try:
        path = write_on_slide_grid(tmp_path / "big.tif", values, UINT8, 100.0, (20000, 15000), 0.25, description="t")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20  # the level-0 image alone would be 300 MB
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.shape == (15000, 20000) and page.tilewidth == 256
        counts = np.asarray(page.databytecounts)
        assert (counts == counts.min()).mean() > 0.9  # the blank tiles: one tiny shared encoding
    level = tifffile.imread(path, level=5)  # 625 x 469 px of 32 level-0 px: still finer than the map
    expected = nearest_on_slide(values, 100 / 32, math.ceil(20000 / 32), math.ceil(15000 / 32))
    np.testing.assert_array_equal(level, expected)


def test_encoded_tiles_share_the_blank_tile() -> None:
    strip = np.zeros((256, 700), np.uint8)
    strip[3, 600] = 9
    blank = b"blank"
    tiles = list(encoded_tiles(strip, 256, blank))
    assert len(tiles) == 3 and tiles[0] is blank and tiles[1] is blank and tiles[2] is not blank


def _block_map(labels: LabelSpec) -> ProbabilityMap:
    """Class 1: a square ring (a hole in the middle); class 2 (if any): a block inside the hole."""
    tumour = np.zeros((60, 80), np.uint8)
    tumour[10:50, 10:50] = 230
    tumour[20:40, 20:40] = 0
    channels = [tumour]
    if labels.num_classes == 3:
        other = np.zeros_like(tumour)
        other[25:35, 25:35] = 230
        channels.append(other)
    return ProbabilityMap(channels, mpp=2.0, encoding=UINT8)


@pytest.mark.parametrize("classes", [("background", "tumor"), ("background", "tumor", "lymphoid")])
def test_asap_regions_read_back_as_the_predicted_regions(tmp_path: Path, classes: tuple[str, ...]) -> None:
    labels = LabelSpec(classes) if len(classes) == 2 else LabelSpec(classes, {"tumor": 1, "lymphoid": 2, "_2": -1})
    pmap = _block_map(labels)
    path, polygons = write_regions_xml(tmp_path / "r.xml", pmap, labels, slide_mpp=1.0, threshold=0.5)
    assert polygons == len(classes) - 1
    names = [g for g, _ in region_groups(pmap, labels, 1.0, 0.5)]
    assert names == [*classes[1:], exclusion_group(labels)] and exclusion_group(labels) == "_2"
    text = path.read_text()
    assert 'PartOfGroup="tumor" Color="#C80000"' in text
    mask = load_annotations(path, label_map=labels.label_map).rasterize(ReadGrid.of_map((60, 80), 2.0))
    expected = np.zeros((60, 80), np.uint8)
    for k, channel in enumerate(pmap.channels, start=1):
        expected[channel >= 128] = k
    np.testing.assert_array_equal(mask, expected)


def test_asap_writer_runs_by_name(tmp_path: Path, slide_file: SlideFactory, checkpoint_file: Path) -> None:
    settings = PredictSettings(tissue_mask=False, threshold=0.01, writers=("tiff", "asap"))
    run_slide(checkpoint_file, slide_file(), tmp_path / "out", settings)
    record = read_prediction_record(tmp_path / "out" / "s.json")
    assert record.output("asap").name == "s_regions.xml"
    assert record.raw["writers"]["asap"]["polygons"] >= 1
    assert load_annotations(record.output("asap")).labels == (1,)
