"""``evaluate(..., lesions=...)`` and ``mrseg evaluate --froc`` on synthetic slides, against the slow reference."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from froc_reference import reference_froc, reference_nms
from mrseg.cli import app
from mrseg.evaluation.evaluate import evaluate
from mrseg.evaluation.settings import LesionSettings
from mrseg.evaluation.slide_lists import CAMELYON16_TEST, CAMELYON16_TEST_EXCLUDED, packaged_lists_dir, resolve_slides
from mrseg.inference.writers.tiff import write_probability_tiff
from mrseg.synth import generate
from mrseg.wsi.annotations import load_annotations
from mrseg.wsi.geometry import ReadGrid

SIZE, SLIDE_MPP, MAP_MPP = 1536, 1.0, 4.0  # 1.5 mm slides; maps of 384 px


def write_record(folder: Path, stem: str, values: np.ndarray, slide: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_probability_tiff(folder / f"{stem}.tif", values, MAP_MPP)
    record = {
        "slide": {"path": str(slide), "dimensions": [SIZE, SIZE], "mpp": SLIDE_MPP},
        "map": {"mpp": MAP_MPP},
        "outputs": {"map": f"{stem}.tif", "record": f"{stem}.json"},
    }
    (folder / f"{stem}.json").write_text(json.dumps(record))


def fake_map(truth: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """A plausible map at 4 µm/px: blurred truth at ``strength``, with noise and a false blob."""
    prob = ndimage.gaussian_filter(truth.astype(float), 2) * strength
    blob = np.zeros_like(prob)
    blob[rng.integers(20, blob.shape[0] - 20), rng.integers(20, blob.shape[1] - 20)] = 1
    prob += ndimage.gaussian_filter(blob, 4) * 60 + rng.random(prob.shape) * 0.3
    return np.rint(np.clip(prob, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def lesion_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """Three synthetic slides with truth, two 'normal' stems without truth; one model's maps."""
    root = tmp_path_factory.mktemp("lesions")
    manifest = generate(root / "synth", 3, seed=4, size_px=SIZE, mpp=SLIDE_MPP)
    rng = np.random.default_rng(0)
    maps: dict[str, np.ndarray] = {}
    map_grid = ReadGrid.covering((SIZE, SIZE), SLIDE_MPP, MAP_MPP)
    for slide, strength in zip(sorted((root / "synth" / "slides").glob("*.tif")), (1.0, 0.45, 0.7), strict=True):
        with load_annotations(root / "synth" / "annotations" / f"{slide.stem}.xml") as ann:
            maps[slide.stem] = fake_map(ann.rasterize(map_grid) > 0, rng, strength)
        write_record(root / "pred", slide.stem, maps[slide.stem], slide)
    for k, stem in enumerate(("normal_a", "normal_b")):
        maps[stem] = fake_map(np.zeros(map_grid.shape, bool), np.random.default_rng(10 + k))
        write_record(root / "pred", stem, maps[stem], slide)
    return manifest.parent, root / "pred", maps


def reference(truth: Path, maps: dict[str, np.ndarray]) -> tuple[list[float], int, float]:
    """FROC sensitivities, lesions and slide AUC computed the slow way (NCRF's NMS on a hand-sampled map)."""
    grid = ReadGrid.covering((SIZE, SIZE), SLIDE_MPP, LesionSettings().mpp)
    pixel_um = SIZE * SLIDE_MPP / grid.width
    radius = round(LesionSettings().nms_radius_um / pixel_um)
    centres = (np.arange(grid.width) + 0.5) * SIZE / grid.width  # level-0 x (and y) of the grid's pixels
    index = np.floor(centres * SLIDE_MPP / MAP_MPP).astype(int)  # the map pixel containing each centre
    slides, maxima, positive = [], [], []
    for stem, values in maps.items():
        prob = values[np.ix_(index, index)] / 255.0
        peaks = reference_nms(prob, 0.5, radius)
        cells = np.asarray([(c, r) for r, c, _ in peaks]).reshape(-1, 2)
        tumour = None
        if not stem.startswith("normal"):
            with load_annotations(truth / "annotations" / f"{stem}.xml") as ann:
                tumour = ann.rasterize(grid) > 0
        slides.append((tumour, cells, np.asarray([p for _, _, p in peaks])))
        maxima.append(prob.max())
        positive.append(tumour is not None and tumour.any())
    sensitivities, n_lesions = reference_froc(slides, pixel_um)
    return sensitivities, n_lesions, float(roc_auc_score(positive, maxima))


def test_lesion_metrics_agree_with_the_reference(
    tmp_path: Path, lesion_data: tuple[Path, Path, dict[str, np.ndarray]]
) -> None:
    truth, pred, maps = lesion_data
    result = evaluate(
        {"m": pred}, truth, tmp_path / "rep", within="slide", missing_truth="normal", lesions=LesionSettings()
    )
    lesions = result["models"]["m"]["lesions"]
    sensitivities, n_lesions, auc = reference(truth, maps)
    assert lesions["froc"]["n_lesions"] == n_lesions > 0 and lesions["froc"]["n_slides"] == 5
    assert list(lesions["froc"]["sensitivity"].values()) == pytest.approx(sensitivities)
    assert lesions["froc"]["score"] == pytest.approx(np.mean(sensitivities))
    assert 0 < lesions["froc"]["score"] < 1 and lesions["froc"]["n_fp"] > 0
    assert lesions["slide"]["auc"] == pytest.approx(auc)
    assert lesions["per_slide"]["normal_a"]["tumour"] is False and lesions["per_slide"]["normal_a"]["lesions"] == 0
    assert result["settings"]["lesions"]["detection"] == "nms" and result["missing"]["assumed_normal"] == [
        "normal_a",
        "normal_b",
    ]
    files = {p.name for p in (tmp_path / "rep").iterdir()}
    assert {"froc.csv", "slides.csv", "froc.png", "slide_roc.png", "metrics.json", "metrics.csv"} <= files
    rows = list(csv.DictReader((tmp_path / "rep" / "froc.csv").open()))
    assert [r["fp_per_slide"] for r in rows] == ["0.25", "0.5", "1", "2", "4", "8", "mean"]
    assert float(rows[-1]["sensitivity"]) == pytest.approx(lesions["froc"]["score"], rel=1e-5)
    slides = list(csv.DictReader((tmp_path / "rep" / "slides.csv").open()))
    assert len(slides) == 5 + 1 and slides[-1]["slide"] == "pooled"
    assert float(slides[-1]["slide_score"]) == pytest.approx(auc, rel=1e-5)


def test_components_rule_and_cli(tmp_path: Path, lesion_data: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    truth, pred, _ = lesion_data
    stems = sorted(p.stem for p in (truth / "slides").glob("*.tif"))
    (tmp_path / "list.txt").write_text(f"# two slides\n{stems[0]}.tif\n\n{stems[1]}  # a comment\n")
    args = ["evaluate", "--pred", f"m={pred}", "--truth", str(truth), "--out", str(tmp_path / "rep")]
    args += ["--within", "slide", "--froc", "--detection", "components", "--slides", str(tmp_path / "list.txt")]
    args += ["--slides", "normal_a", "--missing-truth", "normal"]
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert metrics["slides"] == sorted([*stems[:2], "normal_a"])
    assert metrics["settings"]["slides"] == [*stems[:2], "normal_a"]  # as given
    assert metrics["models"]["m"]["lesions"]["froc"]["detection"] == "components"
    per_slide = metrics["models"]["m"]["lesions"]["per_slide"]
    assert all(row["detections"] == row["fp"] for row in [per_slide["normal_a"]])


def test_camelyon16_test_list() -> None:
    assert len(CAMELYON16_TEST) == 128 and set(CAMELYON16_TEST_EXCLUDED) == {"test_049", "test_114"}
    assert not set(CAMELYON16_TEST) & set(CAMELYON16_TEST_EXCLUDED)
    assert resolve_slides(["camelyon16_test"]) == CAMELYON16_TEST
    packaged = (packaged_lists_dir() / "camelyon16_test.txt").read_text()
    repo_copy = Path(__file__).resolve().parents[2] / "configs" / "camelyon16_test.txt"
    assert repo_copy.read_text() == packaged
    assert resolve_slides(["a,b", "b,c"]) == ("a", "b", "c")
