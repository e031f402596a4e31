"""The demo's stages, one function each: data, train, predict, evaluate, mimic.

Each stage runs its bodies through the :class:`~mrseg.demo.cache.StageRunner`: a body is skipped
when the key of its payload (its resolved settings and the keys of the stages it reads) matches
the record of a finished run whose outputs still exist. :mod:`mrseg.demo.pipeline` chains them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from mrseg import __version__
from mrseg.core.atomic import atomic_write_text
from mrseg.core.errors import MrsegError
from mrseg.demo.cache import StageRunner, fmt_seconds
from mrseg.demo.mimic import mimic_scores, pick_mimic, plot_mimic_crop
from mrseg.demo.results import synth_facts
from mrseg.demo.settings import SPLITS, DemoSettings, ModelSpec
from mrseg.evaluation.evaluate import evaluate
from mrseg.evaluation.settings import LesionSettings
from mrseg.inference.cluster import predict_slides
from mrseg.inference.runner import file_sha256
from mrseg.inference.settings import PredictSettings
from mrseg.synth import SynthParams, generate
from mrseg.training.config import load_config, update_config
from mrseg.training.loop import train

log = logging.getLogger(__name__)

#: Relative training cost of a model (U-Net = 1), used only for ETAs.
COST = {1: 1.0, 4: 2.5}
EVAL_SPLITS: tuple[str, ...] = ("val", "test")
#: What a stage body returns: its outputs (paths relative to the demo folder) and extra facts.
_StageOut = tuple[list[str], dict[str, Any]]


@dataclass
class DemoRun:
    """One demo run: its folder, settings, stage runner, device and models (shared by every stage)."""

    root: Path
    settings: DemoSettings
    runner: StageRunner
    device: str
    specs: list[ModelSpec]
    progress: bool


# ----------------------------------------------------------------------------------------- 1. data


def _synth_payload(settings: DemoSettings, split: str) -> dict[str, Any]:
    size = settings.splits[split]
    return {
        "stage": "synth",
        "version": __version__,
        "split": split,
        "n_slides": size.n_slides,
        "size_px": size.size_px,
        "mpp": settings.slide_mpp,
        "seed": settings.split_seed(split),
        "params": asdict(SynthParams()),
    }


def _generate_split(run: DemoRun, split: str) -> _StageOut:
    settings, size = run.settings, run.settings.splits[split]
    generate(
        run.root / "data" / split, size.n_slides, settings.split_seed(split), size.size_px, settings.slide_mpp,
        prefix=split, workers=max(1, settings.workers), overwrite=True,
    )  # fmt: skip
    facts = synth_facts(run.root, split)
    if not any(f.get("has_tumour") for f in facts):
        log.warning("%s split has no tumour-bearing slide: its AUC is undefined", split)
    rel = f"data/{split}"
    return [f"{rel}/manifest.csv", f"{rel}/synth.json"], {"slides": len(facts)}


def data_stage(run: DemoRun) -> dict[str, str]:
    """Generate the train, val and test slides (``data/<split>/``); returns each split's stage key."""
    keys: dict[str, str] = {}
    for i, split in enumerate(SPLITS, start=1):
        log.info("[1/5 data] %s slides (%d/%d)", split, i, len(SPLITS))
        body = partial(_generate_split, run, split)
        payload = _synth_payload(run.settings, split)
        keys[split] = run.runner.run(f"data_{split}", payload, body, clean=[run.root / "data" / split]).key
    return keys


def write_train_manifest(root: Path) -> Path:
    """``data/train_val.csv``: training slides marked ``train`` and validation slides marked ``val``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["slide", "annotation", "mask", "split"])
    for split in ("train", "val"):
        manifest = root / "data" / split / "manifest.csv"
        for row in csv.DictReader(io.StringIO(manifest.read_text())):
            writer.writerow(
                [f"{split}/{row[c]}" if row.get(c) else "" for c in ("slide", "annotation", "mask")] + [split]
            )
    return atomic_write_text(root / "data" / "train_val.csv", buffer.getvalue())


def _slides(root: Path, split: str) -> list[Path]:
    manifest = root / "data" / split / "manifest.csv"
    return [manifest.parent / row["slide"] for row in csv.DictReader(io.StringIO(manifest.read_text()))]


# ---------------------------------------------------------------------------------------- 2. train


def model_config(settings: DemoSettings, spec: ModelSpec, manifest: Path, *, progress: bool) -> Any:
    """The resolved training configuration of one model: its packaged recipe + the demo's shared overrides."""
    config = load_config(spec.config)
    values: dict[str, Any] = dict(settings.train)
    values.update(
        {
            "model.mpps": list(spec.mpps),
            "data.path": str(manifest),
            "data.split": "manifest",
            "train.seed": settings.seed,
            "sampling.seed": settings.seed,
            "output.progress": progress,
        }
    )
    return update_config(config, values)


def _config_identity(config: Any) -> dict[str, Any]:
    """The parts of a config that change the trained weights (not paths, workers or display)."""
    d = config.to_dict()
    d["data"] = {k: v for k, v in d["data"].items() if k not in ("path", "num_workers", "prefetch_factor")}
    d.pop("output", None)
    return d


def _fit(run: DemoRun, spec: ModelSpec, config: Any) -> _StageOut:
    result = train(config, run.root / "runs" / spec.key, device=run.device, progress=run.progress)
    if result.best_epoch is None:  # train() restores torch's thread count
        raise MrsegError(f"training {spec.label}: no epoch completed ({result.stop_reason})")
    rel = f"runs/{spec.key}"
    info = {
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "epochs": result.epochs_completed,
        "stop_reason": result.stop_reason,
        "parameters": sum(p.numel() for p in result.model.parameters()),
    }
    return [f"{rel}/best.pt", f"{rel}/metrics.csv"], info


def train_stage(
    run: DemoRun, data_keys: dict[str, str], manifest: Path
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Train every model on ``manifest`` (``runs/<model>/``); returns stage keys and training facts by model."""
    keys: dict[str, str] = {}
    info: dict[str, dict[str, Any]] = {}
    total_cost = sum(COST.get(len(s.mpps), 1.0) for s in run.specs)
    done_cost, t_train = 0.0, time.perf_counter()
    for i, spec in enumerate(run.specs, start=1):
        eta = ""
        if done_cost > 0:
            rate = (time.perf_counter() - t_train) / done_cost
            eta = f", training ETA {fmt_seconds(rate * (total_cost - done_cost))}"
        log.info("[2/5 train] %s (%d/%d)%s", spec.label, i, len(run.specs), eta)
        config = model_config(run.settings, spec, manifest, progress=run.progress)
        payload = {"stage": "train", "config": _config_identity(config), "data": [data_keys["train"], data_keys["val"]]}
        body = partial(_fit, run, spec, config)
        record = run.runner.run(f"train_{spec.key}", payload, body, clean=[run.root / "runs" / spec.key])
        keys[spec.key] = record.key
        info[spec.key] = record.info | {"seconds": record.seconds, "cpu_seconds": record.cpu_seconds}
        done_cost += COST.get(len(spec.mpps), 1.0)
    return keys, info


# -------------------------------------------------------------------------------------- 3. predict


def _predict(run: DemoRun, ckpt: Path, target: Path, split: str, settings: PredictSettings) -> _StageOut:
    results = predict_slides(ckpt, _slides(run.root, split), target, settings, show_progress=run.progress)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise MrsegError("prediction failed: " + "; ".join(f"{Path(r.slide).name}: {r.error}" for r in failed))
    rel = target.relative_to(run.root)
    outputs = [f"{rel}/{Path(r.slide).stem}.json" for r in results]
    return outputs, {"tiles": sum(r.tiles for r in results)}


def predict_stage(run: DemoRun, data_keys: dict[str, str], train_keys: dict[str, str]) -> dict[tuple[str, str], str]:
    """Predict the val and test slides with every model (``preds/<split>/<model>/``); stage keys by (split, model)."""
    settings = PredictSettings(
        device=run.device, overlap=run.settings.overlap, batch_size=64, loader_threads=max(1, run.settings.workers)
    )
    keys: dict[tuple[str, str], str] = {}
    jobs = [(split, spec) for split in EVAL_SPLITS for spec in run.specs]
    t_pred = time.perf_counter()
    for i, (split, spec) in enumerate(jobs, start=1):
        eta = ""
        if i > 1:
            eta = f", prediction ETA {fmt_seconds((time.perf_counter() - t_pred) / (i - 1) * (len(jobs) - i + 1))}"
        log.info("[3/5 predict] %s on %s slides (%d/%d)%s", spec.label, split, i, len(jobs), eta)
        ckpt = run.root / "runs" / spec.key / "best.pt"
        payload = {
            "stage": "predict",
            "train": train_keys[spec.key],
            "checkpoint": file_sha256(ckpt),
            "settings": settings.identity(),
            "data": data_keys[split],
        }
        target = run.root / "preds" / split / spec.key
        body = partial(_predict, run, ckpt, target, split, settings)
        keys[(split, spec.key)] = run.runner.run(f"predict_{split}_{spec.key}", payload, body, clean=[target]).key
    return keys


# ------------------------------------------------------------------------------------- 4. evaluate


def _panel_stem(root: Path) -> str:
    """The test slide shown in the qualitative panel: most tumour area, ties broken by mimic area."""
    facts = synth_facts(root, "test")
    best = max(facts, key=lambda f: (float(f.get("tumour_mm2", 0.0)), float(f.get("mimic_mm2", 0.0))))
    return str(best["name"])


def _lesions(split: str) -> LesionSettings | None:
    """The test split is also scored lesion by lesion (CAMELYON16's FROC, default rules)."""
    return LesionSettings() if split == "test" else None


def _score(run: DemoRun, split: str, panels: list[str] | None) -> _StageOut:
    preds = {s.label: run.root / "preds" / split / s.key for s in run.specs}
    target = run.root / "eval" / split
    evaluate(
        preds,
        run.root / "data" / split,
        target,
        mpp=run.settings.eval_mpp,
        within="tissue",
        panels=panels,
        lesions=_lesions(split),
    )
    outputs = [f"eval/{split}/metrics.json", f"eval/{split}/roc.png"]
    outputs += [f"eval/{split}/panel_{p}.png" for p in panels or []]
    return outputs, {}


def evaluate_stage(run: DemoRun, predict_keys: dict[tuple[str, str], str]) -> tuple[dict[str, dict[str, Any]], str]:
    """Evaluate the val and test predictions (``eval/<split>/``); each split's metrics.json and the panel slide."""
    panel = _panel_stem(run.root)
    metrics: dict[str, dict[str, Any]] = {}
    for split in EVAL_SPLITS:
        log.info("[4/5 evaluate] %s split", split)
        panels = [panel] if split == "test" else None
        payload = {
            "stage": "evaluate",
            "predict": [predict_keys[(split, s.key)] for s in run.specs],
            "labels": [s.label for s in run.specs],
            "mpp": run.settings.eval_mpp,
            "panels": panels,
        }
        lesions = _lesions(split)
        if lesions is not None:
            payload["lesions"] = lesions.to_dict()
        target = run.root / "eval" / split
        run.runner.run(f"evaluate_{split}", payload, partial(_score, run, split, panels), clean=[target])
        metrics[split] = json.loads((target / "metrics.json").read_text())
    return metrics, panel


# ---------------------------------------------------------------------------------------- 5. mimic


def _mimics(run: DemoRun) -> _StageOut:
    root, mimic_dir = run.root, run.root / "mimic"
    test_dir = root / "data" / "test"
    layouts = {p.stem: test_dir / "layouts" / f"{p.stem}.geojson" for p in _slides(root, "test")}
    preds = {s.label: root / "preds" / "test" / s.key for s in run.specs}
    scores = mimic_scores(layouts, preds, mpp=run.settings.eval_mpp)
    outputs = ["mimic/mimic.json"]
    chosen = pick_mimic(layouts, run.settings.slide_mpp)
    crop: dict[str, Any] = {}
    if chosen is not None:
        stem, lesion = chosen
        plot_mimic_crop(
            mimic_dir / "mimic_crop.png", test_dir / "slides" / f"{stem}.tif",
            test_dir / "annotations" / f"{stem}.xml", lesion, preds, stem,
        )  # fmt: skip
        outputs.append("mimic/mimic_crop.png")
        crop = {"slide": stem, "bounds_l0": list(lesion.bounds_l0)}
    else:
        log.warning("no mimic on the test slides: no close-up figure")
    atomic_write_text(mimic_dir / "mimic.json", json.dumps({"scores": scores, "crop": crop}, indent=2))
    return outputs, {}


def mimic_stage(run: DemoRun, predict_keys: dict[tuple[str, str], str]) -> dict[str, Any]:
    """Score the test predictions on tumour nests and mimics (``mimic/``); returns ``mimic.json``."""
    log.info("[5/5 report] mimic analysis and report")
    payload = {
        "stage": "mimic",
        "predict": [predict_keys[("test", s.key)] for s in run.specs],
        "mpp": run.settings.eval_mpp,
    }
    mimic_dir = run.root / "mimic"
    run.runner.run("mimic", payload, partial(_mimics, run), clean=[mimic_dir])
    return dict(json.loads((mimic_dir / "mimic.json").read_text()))


__all__ = [
    "COST",
    "EVAL_SPLITS",
    "DemoRun",
    "data_stage",
    "evaluate_stage",
    "mimic_stage",
    "model_config",
    "predict_stage",
    "train_stage",
    "write_train_manifest",
]
