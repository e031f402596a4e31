"""Tests of ``mrseg demo``: stage cache, settings, report rendering, mimic scoring, and an end-to-end quick run."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from mrseg.cli import app
from mrseg.core.errors import ConfigError, DataError
from mrseg.core.overrides import parse_overrides
from mrseg.demo import MODELS, SPLITS, StageCache, default_settings, quick_settings, run_demo, stage_key
from mrseg.demo.cache import StageRunner, Timer
from mrseg.demo.mimic import load_lesions, mimic_scores, pick_mimic
from mrseg.demo.report import (
    headline,
    metrics_rows,
    render_html,
    rich_table,
    stage_totals,
    write_report,
)
from mrseg.demo.results import LESION_HEADERS, lesion_metrics, lesion_rows
from mrseg.demo.seeds import (
    ReportInputError,
    aggregate_markdown,
    aggregate_seeds,
    best_unet,
    main,
    paired_difference,
    paired_differences,
    seed_goals,
)
from mrseg.demo.settings import SplitSize
from mrseg.demo.stages import model_config
from mrseg.evaluation.metrics import BinaryHistogram
from mrseg.inference.writers.tiff import write_probability_tiff
from mrseg.models.checkpoint import load_checkpoint
from mrseg.training.runlog import EpochMetrics, RunLog

# ----------------------------------------------------------------------------- cache


def test_stage_key_is_stable_and_sensitive() -> None:
    a = {"x": 1, "y": [0.5, 1.0], "z": {"b": 2, "a": 1}}
    assert stage_key(a) == stage_key({"z": {"a": 1, "b": 2}, "y": [0.5, 1.0], "x": 1})
    assert stage_key(a) != stage_key(a | {"x": 2})
    assert re.fullmatch(r"[0-9a-f]{64}", stage_key(a))


def test_stage_cache_roundtrip(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    (tmp_path / "out.txt").write_text("done")
    assert cache.lookup("s", "k1") is None
    cache.store("s", "k1", ["out.txt"], 1.5, 2.0, {"n": 3})
    hit = cache.lookup("s", "k1")
    assert hit is not None and hit.cached and hit.info == {"n": 3} and hit.seconds == 1.5
    assert cache.lookup("s", "k2") is None  # another key
    assert StageCache(tmp_path, fresh=True).lookup("s", "k1") is None  # --fresh
    (tmp_path / "out.txt").unlink()
    assert cache.lookup("s", "k1") is None  # an output went missing
    (tmp_path / "out.txt").write_text("done")
    cache.invalidate("s")
    assert cache.lookup("s", "k1") is None


def test_stage_cache_ignores_corrupt_record(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    cache.dir.mkdir(parents=True)
    (cache.dir / "s.json").write_text("{not json")
    assert cache.lookup("s", "k") is None


def test_timer_measures_wall_and_cpu() -> None:
    with Timer() as t:
        sum(i * i for i in range(200_000))
    assert t.seconds > 0 and t.cpu_seconds >= 0


def test_stage_runner_reuses_fresh_stages_and_cleans_before_rerunning(tmp_path: Path) -> None:
    calls: list[str] = []

    def body(tag: str) -> tuple[list[str], dict[str, Any]]:
        calls.append(tag)
        (tmp_path / "out").mkdir(exist_ok=True)
        (tmp_path / "out" / f"{tag}.txt").write_text(tag)
        return [f"out/{tag}.txt"], {"tag": tag}

    runner = StageRunner(tmp_path)
    first = runner.run("s", {"x": 1}, lambda: body("a"), clean=[tmp_path / "out"])
    again = runner.run("s", {"x": 1}, lambda: body("b"), clean=[tmp_path / "out"])
    assert calls == ["a"] and not first.cached and again.cached and again.info == {"tag": "a"}
    changed = runner.run("s", {"x": 2}, lambda: body("c"), clean=[tmp_path / "out"])
    assert calls == ["a", "c"] and changed.info == {"tag": "c"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["c.txt"]  # the old outputs were removed
    assert [r.info["tag"] for r in runner.records] == ["a", "a", "c"]
    assert StageRunner(tmp_path, fresh=True).run("s", {"x": 2}, lambda: body("d")).info == {"tag": "d"}


# ----------------------------------------------------------------------------- settings


def test_settings_models_and_seeds() -> None:
    s = default_settings(seed=3)
    assert [m.key for m in s.model_specs()] == [m.key for m in MODELS]
    assert len(MODELS) == 6
    assert [m.mpps for m in MODELS[:4]] == [(0.5,), (1.0,), (2.0,), (4.0,)]
    assert all(m.mpps == (0.5, 1.0, 2.0, 4.0) for m in MODELS[4:])
    seeds = {s.split_seed(split) for split in SPLITS}
    assert len(seeds) == 3  # train, val and test slides come from different seeds
    q = quick_settings()
    assert q.preset == "quick"
    for split in SPLITS:
        assert (
            q.splits[split].n_slides * q.splits[split].size_px ** 2
            < s.splits[split].n_slides * s.splits[split].size_px ** 2
        )


def test_model_config_applies_shared_recipe(tmp_path: Path) -> None:
    s = default_settings(seed=5)
    manifest = tmp_path / "m.csv"
    for spec in MODELS:
        config = model_config(s, spec, manifest, progress=False)
        assert config.model.name == spec.config.replace("synthetic_", "")
        assert config.model.mpps == spec.mpps
        assert config.data.path == str(manifest)
        assert config.data.split == "manifest"
        assert config.train.seed == 5 and config.sampling.seed == 5
        assert config.train.epochs == s.train["train.epochs"]
        assert config.train.steps_per_epoch == s.train["train.steps_per_epoch"]
    # one recipe: every model shares the same patch size, depth, width and optimisation
    configs = [model_config(s, spec, manifest, progress=False) for spec in MODELS]
    assert len({(c.model.patch_size, c.model.depth, c.model.width) for c in configs}) == 1
    assert len({c.train.model_dump_json() for c in configs}) == 1


# ----------------------------------------------------------------------------- report


def _hist(seed: int, separable: float) -> BinaryHistogram:
    rng = np.random.default_rng(seed)
    truth = rng.random(5000) < 0.2
    prob = np.clip(rng.random(5000) * (1 - separable) + truth * separable, 0, 1)
    h = BinaryHistogram(64)
    h.update(prob, truth)
    return h


def _fake_lesions(score: float) -> dict[str, Any]:
    """A model's ``lesions`` entry of metrics.json, as ``evaluate(..., lesions=...)`` writes it."""
    sensitivity = {rate: score for rate in ("0.25", "0.5", "1", "2", "4", "8")}
    froc = {"score": score, "sensitivity": sensitivity, "n_lesions": 7, "n_itc": 1, "n_fp": 3, "n_slides": 4}
    return {"froc": froc | {"detection": "nms"}, "slide": {"auc": 0.75}}


def test_lesion_rows_summarise_the_test_split() -> None:
    entry = lesion_metrics(_fake_lesions(0.5))
    assert entry["froc"] == 0.5 and entry["slide_auc"] == 0.75 and entry["detection"] == "nms"
    rows = lesion_rows({"models": {"a": {"label": "A", "test_lesions": entry}, "b": {"label": "B"}}})
    assert rows == [["A", *["0.5000"] * 7, "7", "1", "3"]] and len(rows[0]) == len(LESION_HEADERS)


def _fake_demo(root: Path, *, nan_test: bool = False) -> dict[str, Any]:
    """A demo folder with the files the report reads, and its results dictionary."""
    models: dict[str, Any] = {}
    for i, spec in enumerate(MODELS):
        entry: dict[str, Any] = {"label": spec.label, "mpps": list(spec.mpps), "train": {"best_epoch": 2}}
        for split in ("val", "test"):
            h = _hist(i, 0.1 * i)
            s = h.summary()
            auc = math.nan if nan_test and split == "test" else s["auc"]
            entry[split] = {
                "auc": auc, "dice": s["at"]["0.5"]["dice"], "iou": s["at"]["0.5"]["iou"],
                "best_dice": s["best_dice"]["dice"], "best_dice_threshold": s["best_dice"]["threshold"],
            }  # fmt: skip
            metrics_file = root / "eval" / split / "metrics.json"
            data = json.loads(metrics_file.read_text()) if metrics_file.exists() else {"models": {}}
            data["models"][spec.label] = {"pooled": s | {"histogram": h.to_dict()}}
            metrics_file.parent.mkdir(parents=True, exist_ok=True)
            metrics_file.write_text(json.dumps(data))
        entry["mimic"] = {"tumour_mean": 0.6, "tumour_positive": 0.7, "mimic_mean": 0.3, "mimic_positive": 0.2}
        entry["test_lesions"] = lesion_metrics(_fake_lesions(0.1 * i))
        models[spec.key] = entry
        run = RunLog(root / "runs" / spec.key, tensorboard=False)
        for epoch in (1, 2, 3):
            run.add(EpochMetrics(epoch, 0.7 / epoch, 0.6 / epoch + 0.01 * (epoch == 3), 0.1, 1e-3, 10.0, 1.0))
        run.close(plot=False)
    return {
        "mrseg_version": "test", "preset": "quick", "seed": 0, "device": "cpu",
        "settings": quick_settings().to_dict(),
        "machine": {"platform": "x", "cpus": 2, "torch": "t", "torch_threads": 2, "load_average": None},
        "panel_slide": "test_000", "models": models, "mimic_crop": {},
        "stages": [
            {"name": "data_train", "seconds": 2.0, "cpu_seconds": 3.0, "reused": False, "info": {}},
            {"name": "train_unet_0.5", "seconds": 5.0, "cpu_seconds": 9.0, "reused": True, "info": {}},
            {"name": "train_mrn_bilinear", "seconds": 7.0, "cpu_seconds": 11.0, "reused": False, "info": {}},
        ],
        "eval": {"mpp": 2.0}, "total_seconds": 14.0,
    }  # fmt: skip


def test_write_report(tmp_path: Path) -> None:
    results = _fake_demo(tmp_path)
    html_path, md_path = write_report(tmp_path, results)
    for name in ("roc.png", "training_curves.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "results.json").read_text())["models"].keys() == results["models"].keys()
    md = md_path.read_text()
    page = html_path.read_text()
    for spec in MODELS:
        assert spec.label in md and spec.label in page
    assert "](roc.png)" in md and "](training_curves.png)" in md
    assert "## Lesion-level FROC on the test slides (CAMELYON16 rules)" in md and "Lesion-level FROC" in page
    assert all(f"| {spec.label} | {0.1 * i:.4f} |" in md for i, spec in enumerate(MODELS))
    assert "grown by 37.5 µm whose major axis reaches 275 µm" in md
    assert page.count("data:image/png;base64,") == 2  # self-contained; no panel/mimic files in this fake
    assert "src='roc.png'" not in page
    rows = metrics_rows(results)
    assert len(rows) == 6 and all(len(r) == 12 for r in rows)
    assert stage_totals(results) == {"data": (2.0, 3.0), "train": (12.0, 20.0)}
    # the mimic table says which way is better, every column has a header, numbers are rounded
    assert "mimics: mean p (lower is better)" in md and "nests: mean p (higher is better)" in md
    assert "| MRN-bilinear | 0.60 | 0.70 | 0.30 | 0.20 |" in md and "| stage | wall s | CPU s | status |" in md
    assert "<a href='roc.png'>roc.png</a>" in page  # figure links are relative to the demo folder


def test_headline_says_who_won_and_by_how_much(tmp_path: Path) -> None:
    results = _fake_demo(tmp_path)
    models = results["models"]
    for key, (auc, dice) in {
        "unet_4": (0.95, 0.80),
        "mrn_bilinear": (0.97, 0.85),
        "mrn_transposed": (0.96, 0.79),
    }.items():
        models[key]["test"].update(auc=auc, dice=dice)
    for key in ("unet_0.5", "unet_1", "unet_2"):
        models[key]["test"].update(auc=0.5, dice=0.1)
    text = headline(results)
    assert (
        "MRN-bilinear beats every U-Net on AUC and Dice (AUC +0.0200 vs U-Net 4; Dice@0.5 +0.0500 vs U-Net 4)" in text
    )
    assert "MRN-transposed does not beat every U-Net on both (AUC +0.0100 vs U-Net 4; Dice@0.5 -0.0100" in text


def test_report_handles_undefined_auc(tmp_path: Path) -> None:
    results = _fake_demo(tmp_path, nan_test=True)
    assert "No test AUC" in render_html(tmp_path, results)
    assert all(r[6] == "n/a" for r in metrics_rows(results))


def test_rich_table_lists_six_models(tmp_path: Path) -> None:
    console = Console(width=200, record=True)
    console.print(rich_table(_fake_demo(tmp_path)))
    text = console.export_text()
    assert all(spec.label in text for spec in MODELS)


# ----------------------------------------------------------------------------- mimics


def _square(x0: float, y0: float, side: float) -> list[list[list[float]]]:
    return [[[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side], [x0, y0]]]


def test_mimic_scores_on_synthetic_maps(tmp_path: Path) -> None:
    """A map that is 1 on the tumour nest and 0.2 on the mimic scores exactly that."""

    def feature(kind: str, x0: float, side: float) -> dict[str, Any]:
        return {
            "type": "Feature",
            "properties": {"kind": kind},
            "geometry": {"type": "Polygon", "coordinates": _square(x0, x0, side)},
        }

    layout = {
        "type": "FeatureCollection",
        "features": [feature("tumour", 40, 80), feature("mimic", 200, 160), feature("mantle", 180, 200)],
    }
    layout_path = tmp_path / "s.geojson"
    layout_path.write_text(json.dumps(layout))
    lesions = load_lesions(layout_path)
    assert sorted(les.kind for les in lesions) == ["mimic", "tumour"]
    assert {les.kind: les.area_px for les in lesions} == {"tumour": 6400.0, "mimic": 25600.0}

    # slide 512 x 512 level-0 px at 0.5 µm/px; map at 1 µm/px (256 x 256)
    prob = np.zeros((256, 256), np.uint8)
    prob[20:60, 20:60] = 255
    prob[100:180, 100:180] = 51
    pred = tmp_path / "pred"
    pred.mkdir()
    write_probability_tiff(pred / "s.tif", prob, 1.0)
    record = {
        "slide": {"path": "s.tif", "dimensions": [512, 512], "mpp": 0.5},
        "map": {"mpp": 1.0},
        "outputs": {"map": "s.tif"},
    }
    (pred / "s.json").write_text(json.dumps(record))
    scores = mimic_scores({"s": layout_path}, {"m": pred}, mpp=2.0)["m"]
    assert scores["tumour_mean"] == pytest.approx(1.0)
    assert scores["tumour_positive"] == pytest.approx(1.0)
    assert scores["mimic_mean"] == pytest.approx(0.2, abs=1e-6)
    assert scores["mimic_positive"] == 0.0
    assert scores["tumour_px"] == 20 * 20 and scores["mimic_px"] == 40 * 40
    stem, les = pick_mimic({"s": layout_path}, 0.5) or ("", None)
    assert stem == "s" and les is not None and les.kind == "mimic"


def test_load_lesions_rejects_non_layout(tmp_path: Path) -> None:
    bad = tmp_path / "bad.geojson"
    bad.write_text("[]")
    with pytest.raises(DataError, match=r"bad\.geojson"):
        load_lesions(bad)


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out, quick_settings(device="cpu"))


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_quick_demo_artefacts(quick_run: tuple[Path, Any]) -> None:
    out, result = quick_run
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {m.key for m in MODELS}
    for key, entry in results["models"].items():
        for split in ("val", "test"):
            auc = entry[split]["auc"]
            assert 0.0 <= auc <= 1.0, (key, split, auc)
            assert 0.0 <= entry[split]["dice"] <= 1.0 and 0.0 <= entry[split]["iou"] <= 1.0
        froc = entry["test_lesions"]  # the test split is scored lesion by lesion too
        assert froc["detection"] == "nms" and froc["n_slides"] == len(results["splits"]["test"]["slides"])
        assert math.isnan(froc["froc"]) or 0.0 <= froc["froc"] <= 1.0
        ckpt = load_checkpoint(out / "runs" / key / "best.pt")
        assert list(ckpt.input_spec.mpps) == entry["mpps"]
        assert (out / "runs" / key / "metrics.csv").is_file()
        for split in ("val", "test"):
            for slide in results["splits"][split]["slides"]:
                assert (out / "preds" / split / key / f"{slide}.tif").is_file()
                assert (out / "preds" / split / key / f"{slide}.json").is_file()
    # test slides are disjoint from training and validation slides, and seeded differently
    train_slides = set(results["splits"]["train"]["slides"]) | set(results["splits"]["val"]["slides"])
    assert not train_slides & set(results["splits"]["test"]["slides"])
    seeds = {json.loads((out / "data" / s / "synth.json").read_text())["seed"] for s in SPLITS}
    assert len(seeds) == 3
    manifest = (out / "data" / "train_val.csv").read_text()
    assert "test/" not in manifest and "train/slides" in manifest and "val/slides" in manifest
    # report and figures
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4
    assert all(m.label in page for m in MODELS)
    for png in ["roc.png", "training_curves.png", f"eval/test/panel_{results['panel_slide']}.png",
                "eval/val/roc.png", "eval/test/roc.png", "mimic/mimic_crop.png"]:  # fmt: skip
        assert _is_png(out / png), png
    assert "Lesion-level FROC on the test slides" in (out / "report.md").read_text()
    assert result.report_html == out / "report.html"
    # every stage ran and was recorded
    names = [s["name"] for s in results["stages"]]
    assert len(names) == 3 + 6 + 12 + 2 + 1 and not any(s["reused"] for s in results["stages"])


@pytest.mark.slow
def test_quick_demo_rerun_reuses_stages(quick_run: tuple[Path, Any]) -> None:
    out, first = quick_run
    before = (out / "runs" / "unet_0.5" / "best.pt").stat().st_mtime_ns
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "report:" in result.output and "MRN-transposed" in result.output
    assert f"to look at the test slides: mrseg view {out / 'data' / 'test'} --pred unet_0.5=" in result.output
    again = json.loads((out / "results.json").read_text())
    assert all(s["reused"] for s in again["stages"])
    assert (out / "runs" / "unet_0.5" / "best.pt").stat().st_mtime_ns == before
    assert again["models"]["mrn_bilinear"]["test"] == first.results["models"]["mrn_bilinear"]["test"]


@pytest.mark.slow
def test_quick_demo_changed_setting_reruns_dependent_stages(quick_run: tuple[Path, Any]) -> None:
    out, _ = quick_run
    result = run_demo(out, quick_settings(device="cpu", eval_mpp=4.0))
    ran = {r.name for r in result.stages if not r.cached}
    assert ran == {"evaluate_val", "evaluate_test", "mimic"}
    assert result.results["eval"]["mpp"] == 4.0


@pytest.mark.slow
def test_quick_demo_one_job_gives_the_same_numbers(quick_run: tuple[Path, Any], tmp_path: Path) -> None:
    _, first = quick_run  # jobs = min(2, CPUs)
    result = run_demo(tmp_path / "seq", quick_settings(device="cpu", jobs=1))
    for key, entry in first.results["models"].items():
        other = result.results["models"][key]
        assert other["train"]["best_epoch"] == entry["train"]["best_epoch"]
        for split in ("val", "test"):
            assert other[split]["auc"] == pytest.approx(entry[split]["auc"], abs=1e-6), (key, split)
    assert {s["name"] for s in result.results["stages"]} == {s["name"] for s in first.results["stages"]}


def test_settings_eval_splits_without_test() -> None:
    s = default_settings(eval_splits=("val",))
    assert s.data_splits() == ["train", "val"] and s.shown_split() == "val"
    s2 = default_settings(eval_splits=("val", "val2"), splits={**s.splits, "val2": SplitSize(3, 2048)})
    assert s2.data_splits() == ["train", "val", "val2"] and s2.split_seed("val2") == 3
    assert default_settings().shown_split() == "test" and default_settings().jobs >= 1
    with pytest.raises(ConfigError, match="val2"):
        default_settings(eval_splits=("val2",)).data_splits()
    with pytest.raises(ConfigError, match="nope"):
        default_settings(eval_splits=("nope",)).data_splits()


def test_demo_recipe_is_r1_in_both_presets() -> None:
    for s in (default_settings(), quick_settings()):
        assert s.train["train.l2_mode"] == "decoupled" and s.train["train.channels_last"] is True
        assert s.train["sampling.val_cache"] is True and s.train["data.num_workers"] == 0


def test_aggregate_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = []
    for seed, auc in enumerate((0.8, 0.9, math.nan)):
        r = _fake_demo(tmp_path)
        r["seed"] = seed
        r["models"]["mrn_bilinear"]["test"]["auc"] = auc
        runs.append(r)
    agg = aggregate_seeds(runs)
    stats = agg["mrn_bilinear"]["test"]["auc"]
    assert stats["mean"] == pytest.approx(0.85) and stats["n"] == 2
    assert stats["std"] == pytest.approx(0.0707107, rel=1e-5)
    assert stats["min"] == 0.8 and stats["max"] == 0.9
    assert set(agg) == {m.key for m in MODELS}
    assert "MRN-bilinear | 0.8500 ± 0.0707" in aggregate_markdown(runs)
    for i, r in enumerate(runs[:2]):
        (tmp_path / f"s{i}").mkdir()
        (tmp_path / f"s{i}" / "results.json").write_text(json.dumps(r))
    assert main([str(tmp_path / "s0"), str(tmp_path / "s1")]) == 0
    assert "Seeds 0, 1" in capsys.readouterr().out
    assert main([]) == 2
    # the documented short command (src/mrseg/report.py) runs the same main
    shim = [sys.executable, "-m", "mrseg.report", str(tmp_path / "s0"), str(tmp_path / "s1")]
    done = subprocess.run(shim, capture_output=True, text=True, check=True)
    assert "Seeds 0, 1" in done.stdout and "MRN-bilinear" in done.stdout


def test_report_on_what_is_not_a_demo_folder_is_one_line_and_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A log file caught by ``seed*``, an unfinished run, broken JSON: one line naming it, no traceback."""
    good = tmp_path / "seed0"
    good.mkdir()
    (good / "results.json").write_text(json.dumps(_fake_demo(tmp_path)))
    (tmp_path / "seed0.log").write_text("a log")
    (tmp_path / "seed1").mkdir()
    (tmp_path / "seed2").mkdir()
    (tmp_path / "seed2" / "results.json").write_text("{not json")
    (tmp_path / "seed3").mkdir()
    (tmp_path / "seed3" / "results.json").write_text("[1, 2]")
    cases = {
        "seed0.log": "seed0.log: not a folder",
        "seed1": "seed1: no results.json",
        "seed2": "results.json: unreadable",
        "seed3": "results.json: not a demo result",
    }
    for name, message in cases.items():
        assert main([str(good), str(tmp_path / name)]) == 1
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.startswith("error: ") and message in captured.err
        assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    with pytest.raises(ReportInputError, match=r"no results\.json"):
        main([str(tmp_path / "seed1"), "--debug"])
    done = subprocess.run(
        [sys.executable, "-m", "mrseg.report", str(tmp_path / "seed0.log")], capture_output=True, text=True
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr and "not a folder" in done.stderr


def _hand_run(seed: int, test: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """A minimal results.json: ``test`` maps model key -> (AUC, Dice); validation values are 0.5."""
    models = {
        k: {"label": k, "val": {m: 0.5 for m in ("auc", "dice", "iou", "best_dice")},
            "test": {"auc": auc, "dice": dice, "iou": 0.5, "best_dice": 0.5}}
        for k, (auc, dice) in test.items()
    }  # fmt: skip
    return {"seed": seed, "models": models}


def test_paired_difference_mrn_minus_best_unet_per_seed_with_t_interval(tmp_path: Path) -> None:
    # the best U-Net changes between seeds and between metrics: seed 1's best AUC is unet_1, best Dice unet_4
    runs = [
        _hand_run(0, {"unet_1": (0.90, 0.70), "unet_4": (0.95, 0.80), "mrn_bilinear": (0.97, 0.85)}),
        _hand_run(1, {"unet_1": (0.96, 0.60), "unet_4": (0.93, 0.82), "mrn_bilinear": (0.97, 0.81)}),
        _hand_run(2, {"unet_1": (0.91, 0.70), "unet_4": (0.94, 0.75), "mrn_bilinear": (0.98, 0.80)}),
    ]
    auc = paired_difference(runs, "mrn_bilinear", "test", "auc")
    assert auc.rivals == ("unet_4", "unet_1", "unet_4")
    assert auc.diffs == pytest.approx((0.02, 0.01, 0.04))
    assert auc.mean == pytest.approx(0.07 / 3)
    sd = math.sqrt(((0.02 - 0.07 / 3) ** 2 + (0.01 - 0.07 / 3) ** 2 + (0.04 - 0.07 / 3) ** 2) / 2)
    assert auc.sd == pytest.approx(sd) and auc.se == pytest.approx(sd / math.sqrt(3))
    t975_df2 = 4.302652729749464  # Student t, 97.5th percentile, 2 degrees of freedom
    assert auc.ci == pytest.approx((0.07 / 3 - t975_df2 * sd / math.sqrt(3), 0.07 / 3 + t975_df2 * sd / math.sqrt(3)))
    assert auc.wins == 3 and auc.n == 3 and auc.clear
    dice = paired_difference(runs, "mrn_bilinear", "test", "dice")
    assert dice.rivals == ("unet_4", "unet_4", "unet_4")
    assert dice.diffs == pytest.approx((0.05, -0.01, 0.05)) and dice.wins == 2
    assert [(d.model, d.metric) for d in paired_differences(runs)] == [
        ("mrn_bilinear", "auc"),
        ("mrn_bilinear", "dice"),
    ]
    text = aggregate_markdown(runs)
    assert "| mrn_bilinear | test AUC | +0.0233 |" in text and "3 of 3 | yes |" in text and "2 of 3" in text
    # a NaN on one seed leaves that seed out; one seed has no interval
    runs[1]["models"]["mrn_bilinear"]["test"]["auc"] = math.nan
    assert paired_difference(runs, "mrn_bilinear", "test", "auc").n == 2
    single = paired_difference(runs[:1], "mrn_bilinear", "test", "auc")
    assert single.n == 1 and math.isnan(single.se) and not single.clear


def test_parse_overrides_and_bad_keys(tmp_path: Path) -> None:
    assert parse_overrides(["train.epochs=40", "model.width=16", "augment.enabled=false"]) == {
        "train.epochs": 40,
        "model.width": 16,
        "augment.enabled": False,
    }
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["train.epochs"])
    settings = default_settings(train={"train.nonsense": 1})
    with pytest.raises(ConfigError, match=r"train\.nonsense"):
        model_config(settings, MODELS[0], tmp_path / "m.csv", progress=False)


def test_cli_demo_rejects_bad_set(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path / "d"), "--set", "oops"])
    assert result.exit_code == 1
    assert "key=value" in result.output
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path / "d"), "--jobs", "0"])
    assert result.exit_code == 1
    assert "--jobs" in result.output


def test_seed_goals_per_mrn_and_seed() -> None:
    # seed 0: bilinear meets everything; transposed ties U-Net 4 on AUC (not a win) and keeps mimics high
    # seed 1: bilinear loses nests (0.79 < 0.8); transposed meets everything (mimics exactly 0.3 count)
    runs = [
        _hand_run(0, {"unet_4": (0.95, 0.80), "mrn_bilinear": (0.97, 0.85), "mrn_transposed": (0.95, 0.90)}),
        _hand_run(1, {"unet_4": (0.93, 0.82), "mrn_bilinear": (0.97, 0.83), "mrn_transposed": (0.96, 0.84)}),
    ]
    scores = {(0, "mrn_bilinear"): (0.9, 0.1), (0, "mrn_transposed"): (0.9, 0.5),
              (1, "mrn_bilinear"): (0.79, 0.1), (1, "mrn_transposed"): (0.8, 0.3)}  # fmt: skip
    for run in runs:
        for key in ("mrn_bilinear", "mrn_transposed"):
            nest, mimic = scores[(run["seed"], key)]
            run["models"][key]["mimic_by_split"] = {"test": {"tumour_mean": nest, "mimic_mean": mimic}}
    goals = {(g.seed, g.model): g for g in seed_goals(runs)}
    assert [k for k, g in goals.items() if g.met] == [(0, "mrn_bilinear"), (1, "mrn_transposed")]
    assert not goals[(0, "mrn_transposed")].beats_auc and goals[(0, "mrn_transposed")].beats_dice
    assert goals[(1, "mrn_bilinear")].nest == 0.79
    md = aggregate_markdown(runs)
    assert "| 0 | mrn_transposed | no | yes | 0.90 | 0.50 | no |" in md
    assert "mrn_bilinear: goal met in 1 of 2 seeds." in md
    # a results.json without mimic scores never meets the goal
    del runs[0]["models"]["mrn_bilinear"]["mimic_by_split"]
    assert not seed_goals(runs)[0].met and seed_goals(runs)[0].mimic is None


def test_a_unet_without_a_score_is_left_out_alike_by_goals_and_paired_differences() -> None:
    """A U-Net whose AUC is NaN (e.g. no positive pixel predicted) neither wins nor blocks a win."""
    runs = [_hand_run(0, {"unet_2": (float("nan"), 0.70), "unet_4": (0.95, 0.80), "mrn_bilinear": (0.97, 0.85)})]
    assert best_unet(runs[0]["models"], "test", "auc") == ("unet_4", 0.95)
    assert best_unet({"mrn_bilinear": runs[0]["models"]["mrn_bilinear"]}, "test", "auc") is None
    goal = seed_goals(runs)[0]
    assert goal.beats_auc and goal.beats_dice
    d = paired_difference(runs, "mrn_bilinear", "test", "auc")
    assert d.rivals == ("unet_4",) and d.diffs == pytest.approx((0.02,))
