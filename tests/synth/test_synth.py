"""Tests of the synthetic data set generator (mrseg.synth, ``mrseg synth``)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import defusedxml.ElementTree as DET
import numpy as np
import pytest
import shapely
import tifffile
from scipy import ndimage, stats
from shapely.geometry import Point, Polygon, shape
from skimage.draw import polygon as sk_polygon

from mrseg.core.errors import ConfigError, MrsegError
from mrseg.synth import SynthParams, assign_splits, generate, parse_split
from mrseg.synth import writer as synth_writer
from mrseg.synth.raster import paint, rasterize
from mrseg.wsi.tiff import pyramid_shapes

MPP = 0.5
SIZE = 2048
SEED = 0  # both slides of seed 0 have tumour (first draw of each slide's generator)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ds"
    manifest = generate(out, 2, SEED, size_px=SIZE, mpp=MPP, split="train=0.5,val=0.5")
    assert manifest == out / "manifest.csv"
    return out


def _manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def _read_asap(path: Path) -> dict[str, list[np.ndarray]]:
    groups: dict[str, list[np.ndarray]] = {}
    root = DET.parse(path).getroot()
    for ann in root.iter("Annotation"):
        coords = sorted(ann.iter("Coordinate"), key=lambda c: int(c.get("Order")))
        xy = np.array([[float(c.get("X")), float(c.get("Y"))] for c in coords])
        groups.setdefault(ann.get("PartOfGroup"), []).append(xy)
    return groups


def _sk_mask(groups: dict[str, list[np.ndarray]], shape_hw: tuple[int, int]) -> np.ndarray:
    """Independent rasterisation with skimage (pixel (r, c) has its centre at (c + 0.5, r + 0.5))."""
    mask = np.zeros(shape_hw, dtype=np.uint8)
    for group, value in (("_0", 1), ("_2", 0)):
        for xy in groups.get(group, []):
            rr, cc = sk_polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, shape=shape_hw)
            mask[rr, cc] = value
    return mask


def _layout(out: Path, name: str) -> dict[str, list[Polygon]]:
    data = json.loads((out / "layouts" / f"{name}.geojson").read_text())
    kinds: dict[str, list[Polygon]] = {}
    for feat in data["features"]:
        kinds.setdefault(feat["properties"]["kind"], []).append(shape(feat["geometry"]))
    return kinds


def _image(out: Path, rel: str) -> np.ndarray:
    return tifffile.imread(out / rel, key=0)


# --- files, backends, manifest -------------------------------------------------------------------


def test_manifest_and_metadata(dataset: Path) -> None:
    rows = _manifest(dataset)
    assert list(rows[0]) == ["slide", "annotation", "mask", "split"]
    assert len(rows) == 2
    assert sorted(r["split"] for r in rows) == ["train", "val"]
    for row in rows:
        for key in ("slide", "annotation", "mask"):
            assert not Path(row[key]).is_absolute()
            assert (dataset / row[key]).is_file()
    meta = json.loads((dataset / "synth.json").read_text())
    assert meta["seed"] == SEED and meta["mpp"] == MPP and meta["mask_mpp"] == MPP
    assert SynthParams.from_dict(meta["params"]) == SynthParams()
    assert [s["name"] for s in meta["slides"]] == ["synth_000", "synth_001"]
    assert not list(dataset.parent.glob(".ds.tmp-*"))  # the temporary folder was renamed


@pytest.mark.parametrize("backend", ["tiffslide", "openslide"])
def test_slides_and_masks_open_in_backends(dataset: Path, backend: str) -> None:
    lib = pytest.importorskip(backend)
    expected = [(w, h) for h, w in pyramid_shapes(SIZE, SIZE)]
    for row in _manifest(dataset):
        for key in ("slide", "mask"):
            slide = (lib.TiffSlide if backend == "tiffslide" else lib.OpenSlide)(str(dataset / row[key]))
            try:
                assert slide.level_dimensions == tuple(expected)
                assert float(slide.properties[f"{backend}.mpp-x"]) == pytest.approx(MPP, rel=1e-6)
                assert float(slide.properties[f"{backend}.mpp-y"]) == pytest.approx(MPP, rel=1e-6)
                region = np.asarray(slide.read_region((0, 0), slide.level_count - 1, (64, 64)))
                assert region.shape[:2] == (64, 64)
            finally:
                slide.close()


def test_slide_opens_with_mrseg_slide(dataset: Path) -> None:
    slide_mod = pytest.importorskip("mrseg.wsi.slide")
    row = _manifest(dataset)[0]
    with slide_mod.Slide.open(dataset / row["slide"]) as slide:
        assert slide.mpp == pytest.approx(MPP)
        assert slide.dimensions == (SIZE, SIZE)
        patch = slide.read((SIZE / 2, SIZE / 2), 2.0, (64, 64))
        assert patch.shape == (64, 64, 3) and patch.dtype == np.uint8


def test_tissue_detection_finds_the_tissue(dataset: Path) -> None:
    slide_mod = pytest.importorskip("mrseg.wsi.slide")
    tissue_mod = pytest.importorskip("mrseg.wsi.tissue")
    meta = json.loads((dataset / "synth.json").read_text())["slides"]
    for row, facts in zip(_manifest(dataset), meta, strict=True):
        with slide_mod.Slide.open(dataset / row["slide"]) as slide:
            found = tissue_mod.tissue_mask(slide).fraction
        expected = facts["tissue_mm2"] / (SIZE * MPP / 1000) ** 2
        assert found == pytest.approx(expected, abs=0.08)


def test_mask_levels_are_labels(dataset: Path) -> None:
    row = _manifest(dataset)[0]
    with tifffile.TiffFile(dataset / row["mask"]) as tif:
        assert tif.pages[0].compression != tifffile.COMPRESSION.JPEG
        for page in tif.pages:
            assert set(np.unique(page.asarray())) <= {0, 1}


# --- agreement: annotations, masks, pixels --------------------------------------------------------


def test_annotation_and_mask_agree(dataset: Path) -> None:
    for row in _manifest(dataset):
        groups = _read_asap(dataset / row["annotation"])
        assert set(groups) <= {"_0", "_2"} and groups.get("_0")
        mask = _image(dataset, row["mask"])
        reference = _sk_mask(groups, mask.shape)
        differ = mask != reference
        boundary = ndimage.binary_dilation(reference > 0) & ~ndimage.binary_erosion(reference > 0)
        assert not (differ & ~boundary).any()
        assert differ.sum() <= 0.01 * max(1, reference.sum())


def test_annotation_reader_agrees_with_mask(tmp_path: Path) -> None:
    annotations = pytest.importorskip("mrseg.wsi.annotations")
    if not hasattr(annotations, "load_annotations"):
        pytest.skip("mrseg.wsi.annotations.load_annotations not available yet")
    size = 1536
    out = generate(tmp_path / "lumens", 1, 0, size_px=size, params=SynthParams(p_lumen=1.0)).parent
    row = _manifest(out)[0]
    assert _read_asap(out / row["annotation"]).get("_2")  # the exclusion group is exercised
    ann = annotations.load_annotations(out / row["annotation"])
    mask = _image(out, row["mask"])
    got = ann.rasterize((0.0, 0.0, float(size), float(size)), (size, size))
    differ = got != mask
    boundary = ndimage.binary_dilation(mask > 0) & ~ndimage.binary_erosion(mask > 0)
    assert not (differ & ~boundary).any()
    assert differ.sum() <= 0.01 * mask.sum()


def test_mimics_are_label_zero_and_tumours_label_one(dataset: Path) -> None:
    for row in _manifest(dataset):
        name = Path(row["slide"]).stem
        kinds = _layout(dataset, name)
        mask = _image(dataset, row["mask"])
        assert kinds.get("mimic"), "every slide has mimics"
        for kind, label in (("mimic", 0), ("tumour", 1)):
            for poly in kinds.get(kind, []):
                inner = rasterize(poly.buffer(-2), mask.shape)
                lumen = np.zeros(mask.shape, dtype=bool)
                for lum in kinds.get("lumen", []):
                    if poly.contains(lum):
                        lumen |= rasterize(lum.buffer(2), mask.shape)
                assert (mask[inner & ~lumen] == label).all()


def _dark(image: np.ndarray) -> np.ndarray:
    """Nucleus-like pixels: dark and bluish (haematoxylin)."""
    rgb = image.astype(np.int16)
    return (rgb.sum(axis=2) < 420) & (rgb[..., 2] > rgb[..., 0] - 10)


def _ring_stats(dataset: Path) -> tuple[list[float], list[float], list[float], list[float]]:
    """Per lesion (tumour nests vs mimics): interior dark fraction and dark fraction 30-60 um outside."""
    tum_in, mim_in, tum_ring, mim_ring = [], [], [], []
    for row in _manifest(dataset):
        kinds = _layout(dataset, Path(row["slide"]).stem)
        dark = _dark(_image(dataset, row["slide"]))
        for kind, inside, ring in (("tumour", tum_in, tum_ring), ("mimic", mim_in, mim_ring)):
            for poly in kinds.get(kind, []):
                core = rasterize(poly.buffer(-8 / MPP), dark.shape)
                annulus = rasterize(poly.buffer(60 / MPP).difference(poly.buffer(30 / MPP)), dark.shape)
                if core.sum() > 100:
                    inside.append(float(dark[core].mean()))
                ring.append(float(dark[annulus].mean()))
    return tum_in, mim_in, tum_ring, mim_ring


def test_pixels_agree_with_labels(dataset: Path) -> None:
    tum_in, mim_in, tum_ring, mim_ring = _ring_stats(dataset)
    assert len(tum_in) >= 3 and len(mim_in) >= 3
    # lesion interiors hold nuclei (not glass, not empty stroma) and tumour and mimic alike
    assert 0.08 < np.mean(tum_in) < 0.6 and 0.08 < np.mean(mim_in) < 0.6
    assert abs(np.mean(tum_in) - np.mean(mim_in)) < 0.05
    # mimics have the mantle ring, tumour nests do not
    assert min(mim_ring) > max(tum_ring)
    row = _manifest(dataset)[0]
    image = _image(dataset, row["slide"])
    tissue = rasterize(shapely.union_all(_layout(dataset, "synth_000")["tissue"]), image.shape[:2])
    glass = ~ndimage.binary_dilation(tissue, iterations=4)
    assert image[glass].mean() > 225  # white-ish background outside the tissue
    assert image[tissue].mean() < image[glass].mean() - 20


def _auc(a: list[float] | np.ndarray, b: list[float] | np.ndarray) -> float:
    u = stats.mannwhitneyu(a, b).statistic
    return float(u / (len(a) * len(b)))


def test_labels_need_context(dataset: Path) -> None:
    """32-um windows inside tumour vs mimic overlap; a 30-60 um annulus around them separates them."""
    rng = np.random.default_rng(0)
    half = 32  # 64 px at 0.5 mpp = 32 um window
    feats: dict[str, list[np.ndarray]] = {"tumour": [], "mimic": []}
    for row in _manifest(dataset):
        kinds = _layout(dataset, Path(row["slide"]).stem)
        image = _image(dataset, row["slide"]).astype(np.float32)
        dark = _dark(image.astype(np.uint8))
        for kind in feats:
            for poly in kinds.get(kind, []):
                # window fully inside the lesion: centre at least half a window (plus a margin) from the edge
                core = poly.buffer(-(half * math.sqrt(2) + 4))
                lumens = [lum.buffer(half * 1.5) for lum in kinds.get("lumen", []) if poly.contains(lum)]
                if lumens:
                    core = core.difference(shapely.union_all(lumens))
                if core.is_empty:
                    continue
                minx, miny, maxx, maxy = core.bounds
                pts = rng.uniform((minx, miny), (maxx, maxy), size=(200, 2))
                pts = pts[shapely.contains_xy(core, pts[:, 0], pts[:, 1])][:10]
                for x, y in pts.astype(int):
                    win = image[y - half : y + half, x - half : x + half]
                    d = dark[y - half : y + half, x - half : x + half]
                    feats[kind].append(np.array([*win.reshape(-1, 3).mean(0), win.std(), d.mean()]))
    tum, mim = np.array(feats["tumour"]), np.array(feats["mimic"])
    assert len(tum) >= 10 and len(mim) >= 10
    for j in range(tum.shape[1]):
        auc = _auc(tum[:, j], mim[:, j])
        assert 0.2 < auc < 0.8, f"local feature {j} separates tumour from mimic (AUC {auc:.2f})"
    _, _, tum_ring, mim_ring = _ring_stats(dataset)
    assert _auc(mim_ring, tum_ring) > 0.97


# --- determinism, scale, arguments ---------------------------------------------------------------


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_deterministic_by_seed(tmp_path: Path) -> None:
    a = _files(generate(tmp_path / "a", 1, 5, size_px=1024).parent)
    b = _files(generate(tmp_path / "b", 1, 5, size_px=1024, threads=2).parent)  # threads do not matter
    c = _files(generate(tmp_path / "c", 1, 6, size_px=1024).parent)
    assert a == b
    assert a["slides/synth_000.tif"] != c["slides/synth_000.tif"]


def test_workers_give_identical_output(tmp_path: Path) -> None:
    serial = _files(generate(tmp_path / "serial", 2, 4, size_px=512).parent)
    parallel = _files(generate(tmp_path / "parallel", 2, 4, size_px=512, workers=2).parent)
    assert serial == parallel


def test_first_slides_do_not_depend_on_count(tmp_path: Path) -> None:
    one = generate(tmp_path / "one", 1, 2, size_px=768).parent
    two = generate(tmp_path / "two", 2, 2, size_px=768).parent
    for rel in ("slides/synth_000.tif", "masks/synth_000_mask.tif", "annotations/synth_000.xml"):
        assert (one / rel).read_bytes() == (two / rel).read_bytes()


def test_same_tissue_at_another_mpp(tmp_path: Path) -> None:
    fine = generate(tmp_path / "fine", 1, 1, size_px=1536, mpp=0.5).parent
    coarse = generate(tmp_path / "coarse", 1, 1, size_px=768, mpp=1.0).parent
    f = json.loads((fine / "synth.json").read_text())["slides"][0]
    c = json.loads((coarse / "synth.json").read_text())["slides"][0]
    for key in ("tumour_mm2", "mimic_mm2", "tissue_mm2", "tumour_nests", "mimics"):
        assert f[key] == c[key]
    assert f["tumour_pixels"] == pytest.approx(4 * c["tumour_pixels"], rel=0.05)


def test_tumour_free_slide(tmp_path: Path) -> None:
    out = generate(tmp_path / "free", 1, 3, size_px=1024).parent  # slide (3, 0) has no tumour
    meta = json.loads((out / "synth.json").read_text())["slides"][0]
    assert meta["has_tumour"] is False and meta["tumour_pixels"] == 0
    assert not _read_asap(out / "annotations" / "synth_000.xml")
    assert not _image(out, "masks/synth_000_mask.tif").any()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_slides": 0}, "number of slides"),
        ({"n_slides": 1.5}, "number of slides"),
        ({"size_px": 100}, "at least"),
        ({"mpp": 0.0}, "positive"),
        ({"mpp": -1.0}, "positive"),
        ({"mpp": float("nan")}, "positive"),
        ({"mpp": 50.0}, "mpp must be in"),
        ({"split": "train"}, "NAME=FRACTION"),
        ({"split": {"train": 1.0, "val": 0.0}}, "must be > 0"),
        ({"workers": 0}, "workers and threads"),
    ],
)
def test_bad_arguments_refused(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {"out_dir": tmp_path / "out", "n_slides": 1, "seed": 0, "size_px": 512, **kwargs}
    with pytest.raises(ConfigError, match=message):
        generate(**args)
    assert not (tmp_path / "out").exists()


def test_output_folder_rules(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        generate(a_file, 1, 0, size_px=512)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        generate(full, 1, 0, size_px=512)
    assert (full / "keep.txt").exists()
    with pytest.raises(ConfigError, match=r"not a folder mrseg synth wrote \(no synth.json\)"):
        generate(full, 1, 0, size_px=512, overwrite=True)  # overwrite replaces only a data set
    assert (full / "keep.txt").read_text() == "x"
    data = tmp_path / "data"
    generate(data, 1, 0, size_px=512)
    (data / "extra.txt").write_text("x")
    generate(data, 1, 1, size_px=512, overwrite=True)
    assert (data / "manifest.csv").exists() and not (data / "extra.txt").exists()
    assert json.loads((data / "synth.json").read_text())["seed"] == 1
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]  # the old data set was removed


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = synth_writer.generate_slide

    def failing(*args: object, **kwargs: object) -> object:
        if args[3] == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(synth_writer, "generate_slide", failing)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "out", 2, 0, size_px=512)
    assert [p.name for p in tmp_path.iterdir()] == [".out.lock"]  # the lock file stays (the lock does not)


def test_split_assignment() -> None:
    assert parse_split("train=0.8, val=0.2") == {"train": 0.8, "val": 0.2}
    flags = [True] * 6 + [False] * 4
    splits = assign_splits(flags, {"train": 0.5, "val": 0.5}, seed=1)
    assert splits.count("train") == 5 and splits.count("val") == 5
    for name in ("train", "val"):  # stratified by tumour presence
        assert sum(f for f, s in zip(flags, splits, strict=True) if s == name) == 3
    assert splits == assign_splits(flags, {"train": 0.5, "val": 0.5}, seed=1)
    with pytest.raises(ConfigError):
        parse_split("train=abc")


def test_params_validation_and_roundtrip() -> None:
    p = SynthParams(lesion_radius_um=(50.0, 100.0))
    assert SynthParams.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(ConfigError):
        SynthParams(lesion_radius_um=(100.0, 50.0))
    with pytest.raises(ConfigError):
        SynthParams(p_tumour_free=1.5)
    with pytest.raises(ConfigError, match="unknown"):
        SynthParams.from_dict({"nope": 1})
    with pytest.raises(AttributeError):
        p.tissue_fraction = 0.1  # type: ignore[misc]


# --- rasteriser -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1.0, 0.5, 3.0])
def test_rasterize_matches_pixel_centre_rule(scale: float) -> None:
    rng = np.random.default_rng(int(scale * 10))
    for _ in range(5):
        c = rng.uniform(20, 80, size=2)
        geom = Point(*c).buffer(rng.uniform(10, 30), quad_segs=5).difference(Point(*(c + 3)).buffer(5))
        geom = shapely.union_all([geom, Point(*(c + 40)).buffer(6)])
        h, w = int(120 / scale), int(130 / scale)
        got = rasterize(geom, (h, w), origin=(0.3, -0.2), scale=scale)
        yy, xx = np.mgrid[0:h, 0:w]
        ref = shapely.contains_xy(geom, 0.3 + (xx + 0.5) * scale, -0.2 + (yy + 0.5) * scale)
        assert (got != ref).sum() <= 2  # only pixel centres exactly on an edge may differ


def test_paint_bbox_and_outside() -> None:
    raster = np.zeros((50, 60), dtype=np.uint8)
    paint(raster, Polygon([(10, 10), (30, 10), (30, 20), (10, 20)]), 7)
    assert raster.sum() == 7 * 200 and raster[10:20, 10:30].all()
    paint(raster, Point(500, 500).buffer(5), 3)  # entirely outside: no effect, no error
    assert raster.max() == 7


# --- CLI ------------------------------------------------------------------------------------------


def test_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mrseg.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["synth", str(tmp_path / "o"), "--slides", "1", "--size", "512", "--split", "train=1"])
    assert ok.exit_code == 0, ok.output
    assert _manifest(tmp_path / "o")[0]["split"] == "train"
    bad = runner.invoke(app, ["synth", str(tmp_path / "p"), "--slides", "0"])
    assert bad.exit_code == 1
    assert "number of slides" in bad.output
    assert issubclass(ConfigError, MrsegError)
