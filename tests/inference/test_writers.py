"""Writers: the interface and registry (a writer registered here), TIFF maps, the label map, overlay, GeoJSON."""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openslide
import pytest
import tifffile
import torch
from PIL import Image
from torch import nn

from mrseg.core.errors import ConfigError
from mrseg.core.label_spec import LabelSpec
from mrseg.core.prediction_record import read_prediction_record
from mrseg.inference.merger import OnDiskMerger, ProbabilityMap
from mrseg.inference.runner import run_slide
from mrseg.inference.settings import PredictSettings
from mrseg.inference.writers import WRITERS, WriteJob, Writer, create_writers, register_writer
from mrseg.inference.writers.geojson import class_features, mask_polygons, polygon_features
from mrseg.inference.writers.overlay import write_overlay
from mrseg.inference.writers.tiff import write_probability_tiff

SlideFactory = Callable[..., Path]


class ColourClasses(nn.Module):
    """3-class logits from the finest patch's colours: white glass is background; in the pink tissue
    the per-pixel noise decides between tumour (redder and bluer pixels) and lymphoid."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r, g, b = x[:, 0, 0:1], x[:, 0, 1:2], x[:, 0, 2:3]  # normalised (p / 255 - 0.5) / 0.25
        return torch.cat([3 * g, r + b - 1.0, torch.full_like(r, 0.3)], dim=1)


class ClassAreaWriter(Writer):
    """A user's format: ``<stem>_areas.csv``, the area (square microns) of each class of the label map."""

    name = "areas"

    def outputs(self, stem: str, labels: LabelSpec) -> dict[str, str]:
        return {"areas": f"{stem}_areas.csv"}

    def write(self, job: WriteJob) -> dict[str, Any]:
        pmap = job.prediction.map
        counts = np.bincount(np.asarray(pmap.labels()[:]).ravel(), minlength=job.labels.num_classes)
        with open(job.path("areas"), "w", newline="") as f:
            rows = csv.writer(f)
            rows.writerow(["class", "area_um2"])
            for name, count in zip(job.labels.classes, counts, strict=True):
                rows.writerow([name, float(count) * pmap.mpp**2])
        return {"classes": len(job.labels.classes)}


@pytest.fixture()
def areas_writer() -> Iterator[type[Writer]]:
    register_writer(ClassAreaWriter)
    yield ClassAreaWriter
    WRITERS.pop(ClassAreaWriter.name)


def test_a_registered_writer_is_chosen_by_name_and_recorded(
    tmp_path: Path, slide_file: SlideFactory, three_class_file: Path, areas_writer: type[Writer]
) -> None:
    out = tmp_path / "out"
    settings = PredictSettings(writers=("tiff", "areas"))
    result = run_slide(three_class_file, slide_file(), out, settings)
    assert result.status == "done"
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))  # not the lock
    assert names == ["s.json", "s.tif", "s_areas.csv", "s_class1.tif", "s_class2.tif"]
    record = read_prediction_record(out / "s.json")
    rows = list(csv.DictReader(record.output("areas").open()))
    assert [r["class"] for r in rows] == ["background", "tumor", "lymphoid"]
    assert sum(float(r["area_um2"]) for r in rows) == pytest.approx(320 * 256)  # the whole slide at 1 um/px
    assert record.raw["writers"] == {"areas": {"classes": 3}} and "write_areas_s" in record.raw["timings"]
    assert run_slide(three_class_file, slide_file(), out, settings).status == "skipped"


def test_registry_errors(areas_writer: type[Writer]) -> None:
    assert [type(w).__name__ for w in create_writers(["areas", "tiff"])] == ["ClassAreaWriter", "ProbabilityTiffWriter"]
    with pytest.raises(ConfigError, match=r"unknown writer.*'pdf'.*registered"):
        create_writers(["pdf"])

    class Other(Writer):
        name = "areas"

        def outputs(self, stem: str, labels: LabelSpec) -> dict[str, str]:
            return {}

        def write(self, job: WriteJob) -> dict[str, Any]:
            return {}

    with pytest.raises(ConfigError, match="already registered"):
        register_writer(Other)
    with pytest.raises(ConfigError, match="not a Writer"):
        register_writer(dict)  # type: ignore[type-var]


def test_record_and_clashing_outputs_are_refused(
    tmp_path: Path, slide_file: SlideFactory, checkpoint_file: Path
) -> None:
    with pytest.raises(ConfigError, match="always written"):
        run_slide(checkpoint_file, slide_file(), tmp_path / "out", PredictSettings(writers=("tiff", "record")))

    class SecondMap(Writer):
        name = "second_map"

        def outputs(self, stem: str, labels: LabelSpec) -> dict[str, str]:
            return {"map": f"{stem}_second.tif"}

        def write(self, job: WriteJob) -> dict[str, Any]:
            return {}

    register_writer(SecondMap)
    try:
        with pytest.raises(ConfigError, match=r"writes output\(s\) \['map'\]"):
            run_slide(checkpoint_file, slide_file(), tmp_path / "out", PredictSettings(writers=("tiff", "second_map")))
    finally:
        WRITERS.pop("second_map")


def test_probability_tiff_opens_in_openslide_with_the_right_mpp(tmp_path: Path) -> None:
    values = np.tile(np.arange(256, dtype=np.uint8), (300, 3))[:, :700]
    path = write_probability_tiff(tmp_path / "p.tif", values, 0.5)
    with openslide.OpenSlide(str(path)) as slide:
        assert slide.dimensions == (700, 300)
        assert float(slide.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.5)
        assert slide.level_count >= 2
        region = np.asarray(slide.read_region((0, 0), 0, (256, 1)))[0, :, 0]
    np.testing.assert_array_equal(region, np.arange(256))
    half = write_probability_tiff(tmp_path / "h.tif", (values / 255).astype(np.float16), 0.5)
    np.testing.assert_allclose(tifffile.imread(half), values / 255, atol=1e-3)


def test_multiclass_maps_label_map_and_record(
    tmp_path: Path, slide_file: SlideFactory, three_class_file: Path, three_classes: LabelSpec
) -> None:
    out = tmp_path / "out"
    slide = slide_file()  # 320 x 256 px at 1 um/px: label pyramid levels 320 x 256 and 160 x 128
    settings = PredictSettings(tissue_mask=False, writers=("tiff", "labels", "overlay", "geojson"))
    assert run_slide(three_class_file, slide, out, settings, model=ColourClasses()).status == "done"
    record = read_prediction_record(out / "s.json")
    assert record.labels == three_classes and record.raw["checkpoint"]["labels"] == three_classes.to_dict()
    assert set(record.outputs) == {"map", "class1", "class2", "labels", "overlay", "geojson", "record"}
    c1, c2 = (tifffile.imread(record.class_map_path(k)).astype(np.float32) / 255 for k in (1, 2))
    fg = tifffile.imread(record.map_path).astype(np.float32) / 255
    np.testing.assert_allclose(fg, c1 + c2, atol=1.5 / 255)  # 1 - P(background)
    assert record.label_map_path is not None
    with tifffile.TiffFile(record.label_map_path) as tif:
        levels = [page.asarray() for page in tif.pages]
        assert "0 background, 1 tumor, 2 lymphoid" in tif.pages.first.description
    labels = levels[0]
    assert labels.dtype == np.uint8 and labels.shape == (256, 320)
    np.testing.assert_array_equal(labels, np.argmax(np.stack([1 - c1 - c2, c1, c2]), axis=0))  # incl. background
    assert labels[:40].max() == 0 and set(np.unique(labels[60:190, 70:250])) == {1, 2}  # glass; mixed tissue
    np.testing.assert_array_equal(levels[1], labels[::2, ::2])  # reduced by nearest, never a mean of labels
    collection = json.loads(record.output("geojson").read_text())
    names = {f["properties"]["classification"]["name"] for f in collection["features"]}
    assert names == {"tumor", "lymphoid"}
    with pytest.raises(Exception, match="no class 3"):
        record.class_map_path(3)


def test_binary_outputs_have_no_label_map(tmp_path: Path, slide_file: SlideFactory, checkpoint_file: Path) -> None:
    run_slide(checkpoint_file, slide_file(), tmp_path / "out")
    record = read_prediction_record(tmp_path / "out" / "s.json")
    assert set(record.outputs) == {"map", "overlay", "record"} and record.label_map_path is None
    assert record.class_map_path(1) == record.map_path


def test_mask_polygons_keep_holes_in_level0_coordinates() -> None:
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    mask[18:22, 18:22] = False  # a hole
    mask[0:1, 0:1] = True  # too small
    polygons = mask_polygons(mask, pixel_l0=4.0)
    assert len(polygons) == 1
    poly = polygons[0]
    assert len(poly.interiors) == 1
    assert poly.bounds == pytest.approx((40, 40, 120, 120))  # traced along the pixel edges
    assert poly.area == pytest.approx((20 * 20 - 4 * 4) * 16, rel=0.1)
    feature = polygon_features(polygons, "tumor", (200, 0, 0))[0]
    assert feature["geometry"]["type"] == "Polygon" and len(feature["geometry"]["coordinates"]) == 2  # ring + hole
    assert feature["properties"] == {
        "objectType": "annotation",
        "classification": {"name": "tumor", "color": [200, 0, 0]},
    }


def _map(tmp_path: Path, channels: list[np.ndarray], mpp: float = 2.0) -> ProbabilityMap:
    h, w = channels[0].shape
    merger = OnDiskMerger(tmp_path / "m", (h, w), len(channels), mpp=mpp, ramp="constant", out_dtype="float16")
    merger.aggregate(np.stack(channels)[None].astype(np.float32), [(0, 0, w, h)])
    return merger.finalize()


def test_multiclass_geojson_features_carry_each_class_name_and_colour(tmp_path: Path, three_classes: LabelSpec) -> None:
    tumor, lymphoid = np.zeros((40, 60)), np.zeros((40, 60))
    tumor[5:15, 5:15] = 0.9
    lymphoid[20:35, 30:50] = 0.8
    features = class_features(_map(tmp_path, [tumor, lymphoid]), three_classes, slide_mpp=0.5, threshold=0.5)
    classes = [f["properties"]["classification"] for f in features]
    assert classes == [{"name": "tumor", "color": [200, 0, 0]}, {"name": "lymphoid", "color": [0, 90, 220]}]
    # map pixels are 2 um = 4 level-0 px: the tumour square covers level-0 x in [20, 60)
    xs = [c[0] for c in features[0]["geometry"]["coordinates"][0]]
    assert min(xs) == pytest.approx(20, abs=2) and max(xs) == pytest.approx(60, abs=2)


def test_binary_geojson_is_named_by_the_label_spec(
    tmp_path: Path, slide_file: SlideFactory, checkpoint_file: Path
) -> None:
    settings = PredictSettings(writers=("tiff", "overlay", "geojson"), threshold=0.01)
    run_slide(checkpoint_file, slide_file(), tmp_path / "out", settings)
    collection = json.loads((tmp_path / "out" / "s.geojson").read_text())
    assert collection["type"] == "FeatureCollection" and collection["features"]
    names = {json.dumps(f["properties"]["classification"]) for f in collection["features"]}
    assert names == {json.dumps({"name": "tumor", "color": [200, 0, 0]})}
    record = json.loads((tmp_path / "out" / "s.json").read_text())
    assert record["polygons"] == len(collection["features"])


def test_overlay_png_has_the_thumbnail_size(tmp_path: Path) -> None:
    thumb = np.full((50, 80, 3), 255, np.uint8)
    prob = np.zeros((100, 160), np.float32)
    prob[:, 80:] = 1.0
    image = np.asarray(Image.open(write_overlay(tmp_path / "o.png", thumb, prob)))
    assert image.shape == (50, 80, 3)
    assert np.all(image[:, :30] == 255) and not np.all(image[:, 50:] == 255)


def _overlay_reference(thumbnail: np.ndarray, prob: np.ndarray, alpha: float = 0.6, cmap: str = "jet") -> np.ndarray:
    """The overlay blend as plain float32 arithmetic per pixel (the formula the lookup table stores)."""
    from matplotlib import colormaps

    level = np.rint(np.clip(prob, 0.0, 1.0) * 255).astype(np.uint8)
    lut = colormaps[cmap](np.arange(256), bytes=True)[:, :3].astype(np.float32)
    a = (np.arange(256, dtype=np.float32) / 255 * alpha)[level][..., None]
    return np.rint(thumbnail[..., :3] * (1 - a) + lut[level] * a).astype(np.uint8)


@pytest.mark.parametrize(
    ("alpha", "dtype", "band"), [(0.6, "float32", 1000), (0.35, "float64", 1 << 18), (1.0, "float32", 1)]
)
def test_overlay_blend_is_bytewise_the_float_formula(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alpha: float, dtype: str, band: int
) -> None:
    """The banded lookup table gives the per-pixel float arithmetic's bytes, for any band height."""
    import mrseg.inference.writers.overlay

    monkeypatch.setattr(mrseg.inference.writers.overlay, "BLEND_BAND_PIXELS", band)
    rng = np.random.default_rng(3)
    # every (thumbnail value, probability level) pair occurs, plus the ends of [0, 1] and beyond
    thumb = rng.integers(0, 256, (256, 300, 3), dtype=np.uint8)
    thumb[:, :256, 0] = np.arange(256, dtype=np.uint8)[None, :]
    prob = rng.random((256, 300)).astype(np.float32)
    prob[:, :256] = (np.arange(256, dtype=np.float32) / 255)[:, None]
    prob[0, 256:] = [-0.5, 0.0, 1.0, 1.5, *rng.random(40)]
    prob = prob.astype(dtype)
    image = np.asarray(Image.open(write_overlay(tmp_path / "o.png", thumb, prob, alpha=alpha)))
    np.testing.assert_array_equal(image, _overlay_reference(thumb, prob, alpha))


class _Meeting(Writer):
    """Concurrent writers that only finish if the other one is running at the same moment."""

    concurrent = True
    barrier = threading.Barrier(2, timeout=20)

    def outputs(self, stem: str, labels: LabelSpec) -> dict[str, str]:
        return {self.name: f"{stem}.{self.name}"}

    def write(self, job: WriteJob) -> dict[str, Any]:
        self.barrier.wait()
        job.path(self.name).write_text(self.name)
        return {"met": True}


class _MeetA(_Meeting):
    name = "meet_a"


class _MeetB(_Meeting):
    name = "meet_b"


class _Witness(Writer):
    """Not concurrent: runs after the concurrent writers and records the facts it saw."""

    name = "witness"

    def outputs(self, stem: str, labels: LabelSpec) -> dict[str, str]:
        return {"witness": f"{stem}.witness"}

    def write(self, job: WriteJob) -> dict[str, Any]:
        job.path("witness").write_text("seen")
        return {"saw": sorted(job.facts)}


@pytest.fixture()
def meeting_writers() -> Iterator[None]:
    for cls in (_MeetA, _MeetB, _Witness):
        register_writer(cls)
    yield
    for cls in (_MeetA, _MeetB, _Witness):
        WRITERS.pop(cls.name)


def test_concurrent_writers_run_at_once_and_are_recorded_in_order(
    tmp_path: Path, slide_file: SlideFactory, checkpoint_file: Path, meeting_writers: None
) -> None:
    _Meeting.barrier.reset()
    settings = PredictSettings(writers=("witness", "meet_b", "tiff", "meet_a"), writer_threads=3)
    assert run_slide(checkpoint_file, slide_file(), tmp_path / "out", settings).status == "done"
    raw = read_prediction_record(tmp_path / "out" / "s.json").raw
    assert list(raw["outputs"]) == ["witness", "meet_b", "map", "meet_a", "record"]
    saw = {"saw": ["meet_a", "meet_b", "tiff"]}
    assert raw["writers"] == {"witness": saw, "meet_b": {"met": True}, "meet_a": {"met": True}}
    assert {"write_meet_a_s", "write_meet_b_s", "write_tiff_s", "write_witness_s", "write_s"} <= set(raw["timings"])


def test_writer_threads_do_not_change_a_byte(tmp_path: Path, slide_file: SlideFactory, checkpoint_file: Path) -> None:
    slide = slide_file()
    files = {}
    for threads in (1, 2):
        out = tmp_path / f"t{threads}"
        settings = PredictSettings(writers=("tiff", "overlay", "geojson", "level0"), writer_threads=threads)
        assert run_slide(checkpoint_file, slide, out, settings).status == "done"
        files[threads] = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".tif", ".png", ".geojson")}
    assert len(files[1]) == 4 and files[1] == files[2]


def test_a_failing_concurrent_writer_fails_the_slide_and_commits_nothing(
    tmp_path: Path, slide_file: SlideFactory, checkpoint_file: Path, meeting_writers: None
) -> None:
    _Meeting.barrier.reset()
    _Meeting.barrier.abort()  # both meeting writers fail at once (BrokenBarrierError)
    settings = PredictSettings(writers=("tiff", "meet_a", "meet_b"), writer_threads=3)
    with pytest.raises(threading.BrokenBarrierError):
        run_slide(checkpoint_file, slide_file(), tmp_path / "out", settings)
    assert [p.name for p in (tmp_path / "out").iterdir()] == [".s.lock"]
