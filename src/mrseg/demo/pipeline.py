"""The demo's stages: data -> train (six models) -> predict (val, test) -> evaluate -> mimics -> report.

Folder layout of ``DIR`` (every path below is relative to it)::

    data/{train,val,test}/      mrseg synth outputs (slides, annotations, masks, layouts, manifest.csv)
    data/train_val.csv          training manifest: train slides (split=train) and val slides (split=val)
    runs/<model>/               mrseg train run folders (best.pt, last.pt, metrics.csv, config.yaml...)
    preds/<split>/<model>/      mrseg predict outputs (<stem>.tif, <stem>_overlay.png, <stem>.json)
    eval/<split>/               mrseg evaluate outputs (metrics.json, metrics.csv, roc.png, panel_<stem>.png)
    mimic/                      mimic scores (mimic.json) and the close-up (mimic_crop.png)
    results.json, report.html, report.md, *.png
    .stages/<stage>.json        stage records (the cache)

Each stage's key hashes its resolved settings and the keys of the stages it reads, so changing a
setting re-runs exactly the stages that depend on it; ``fresh=True`` re-runs everything.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mrseg import __version__
from mrseg.core.atomic import atomic_write_text
from mrseg.core.errors import MrsegError
from mrseg.demo.cache import StageCache, StageRecord, Timer, stage_key
from mrseg.demo.settings import SPLITS, DemoSettings, ModelSpec

log = logging.getLogger(__name__)

#: Relative training cost of a model (U-Net = 1), used only for ETAs.
COST = {1: 1.0, 4: 2.5}
EVAL_SPLITS: tuple[str, ...] = ("val", "test")
#: What a stage body returns: its outputs (paths relative to the demo folder) and extra facts.
_StageOut = tuple[list[str], dict[str, Any]]


@dataclass
class DemoResult:
    """What :func:`run_demo` produced: the results dictionary (``results.json``) and the report paths."""

    out_dir: Path
    results: dict[str, Any]
    report_html: Path
    report_md: Path
    stages: list[StageRecord] = field(default_factory=list)


def _device(spec: str) -> str:
    from mrseg.core.device import resolve_device

    return str(resolve_device(spec))


def _fmt_s(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


class _Runner:
    """Runs one stage through the cache and keeps every record (in order) for the report."""

    def __init__(self, root: Path, fresh: bool) -> None:
        self.cache = StageCache(root, fresh=fresh)
        self.records: list[StageRecord] = []

    def run(
        self,
        name: str,
        payload: Any,
        body: Callable[[], tuple[list[str], dict[str, Any]]],
        clean: list[Path] = (),  # type: ignore[assignment]
    ) -> StageRecord:
        key = stage_key(payload)
        record = self.cache.lookup(name, key)
        if record is not None:
            log.info("stage %s: reused (finished %s, took %s)", name, record.finished, _fmt_s(record.seconds))
            self.records.append(record)
            return record
        self.cache.invalidate(name)
        for path in clean:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        with Timer() as timer:
            outputs, info = body()
        record = self.cache.store(name, key, outputs, timer.seconds, timer.cpu_seconds, info)
        log.info("stage %s: done in %s (CPU %s)", name, _fmt_s(timer.seconds), _fmt_s(timer.cpu_seconds))
        self.records.append(record)
        return record


def _synth_payload(settings: DemoSettings, split: str) -> dict[str, Any]:
    from mrseg.synth import SynthParams

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


def _write_train_manifest(root: Path) -> Path:
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


def _synth_facts(root: Path, split: str) -> list[dict[str, Any]]:
    data = json.loads((root / "data" / split / "synth.json").read_text())
    return list(data.get("slides", []))


def model_config(settings: DemoSettings, spec: ModelSpec, manifest: Path, *, progress: bool) -> Any:
    """The resolved training configuration of one model: its packaged recipe + the demo's shared overrides."""
    from mrseg.training.config import load_config, update_config

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


def _panel_stem(root: Path) -> str:
    """The test slide shown in the qualitative panel: most tumour area, ties broken by mimic area."""
    facts = _synth_facts(root, "test")
    best = max(facts, key=lambda f: (float(f.get("tumour_mm2", 0.0)), float(f.get("mimic_mm2", 0.0))))
    return str(best["name"])


def run_demo(
    out_dir: str | os.PathLike[str],
    settings: DemoSettings | None = None,
    *,
    fresh: bool = False,
    progress: bool = False,
) -> DemoResult:
    """Run the paper's experiment end to end on synthetic slides and write ``DIR/report.html``.

    Parameters
    ----------
    out_dir
        The demo folder (created). Finished stages found there are reused unless ``fresh``.
    settings
        What to run (:func:`mrseg.demo.default_settings` when None).
    fresh
        Ignore the stage records and redo every stage.
    progress
        Show rich progress bars of training and prediction (the CLI passes True on a terminal).

    Returns
    -------
    DemoResult
        ``results`` is the content of ``results.json`` (every number of the report).

    Raises
    ------
    MrsegError
        A stage failed (the message names the stage and what went wrong).
    """
    from mrseg.demo.settings import default_settings

    settings = settings or default_settings()
    root = Path(out_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    runner = _Runner(root, fresh)
    t_start = time.perf_counter()
    device = _device(settings.device)
    specs = settings.model_specs()
    log.info(
        "demo (%s preset, seed %d) in %s on %s: %d models, slides %s",
        settings.preset, settings.seed, root, device, len(specs),
        ", ".join(f"{s} {v.n_slides}x{v.size_px}px" for s, v in settings.splits.items()),
    )  # fmt: skip

    # 1. data
    data_keys: dict[str, str] = {}
    for i, split in enumerate(SPLITS, start=1):
        log.info("[1/5 data] %s slides (%d/%d)", split, i, len(SPLITS))
        payload = _synth_payload(settings, split)
        target = root / "data" / split

        def make(split: str = split, target: Path = target) -> _StageOut:
            from mrseg.synth import generate

            size = settings.splits[split]
            generate(
                target, size.n_slides, settings.split_seed(split), size.size_px, settings.slide_mpp,
                prefix=split, workers=max(1, settings.workers), overwrite=True,
            )  # fmt: skip
            facts = _synth_facts(root, split)
            if not any(f.get("has_tumour") for f in facts):
                log.warning("%s split has no tumour-bearing slide: its AUC is undefined", split)
            rel = f"data/{split}"
            return [f"{rel}/manifest.csv", f"{rel}/synth.json"], {"slides": len(facts)}

        data_keys[split] = runner.run(f"data_{split}", payload, make, clean=[target]).key
    manifest = _write_train_manifest(root)

    # 2. training
    train_keys: dict[str, str] = {}
    train_info: dict[str, dict[str, Any]] = {}
    total_cost = sum(COST.get(len(s.mpps), 1.0) for s in specs)
    done_cost, t_train = 0.0, time.perf_counter()
    for i, spec in enumerate(specs, start=1):
        eta = ""
        if done_cost > 0:
            rate = (time.perf_counter() - t_train) / done_cost
            eta = f", training ETA {_fmt_s(rate * (total_cost - done_cost))}"
        log.info("[2/5 train] %s (%d/%d)%s", spec.label, i, len(specs), eta)
        config = model_config(settings, spec, manifest, progress=progress)
        payload = {"stage": "train", "config": _config_identity(config), "data": [data_keys["train"], data_keys["val"]]}
        run_dir = root / "runs" / spec.key

        def fit(config: Any = config, run_dir: Path = run_dir, spec: ModelSpec = spec) -> _StageOut:
            from mrseg.training.loop import train

            result = train(config, run_dir, device=device, progress=progress)  # restores torch's thread count
            if result.best_epoch is None:
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

        record = runner.run(f"train_{spec.key}", payload, fit, clean=[run_dir])
        train_keys[spec.key] = record.key
        train_info[spec.key] = record.info | {"seconds": record.seconds, "cpu_seconds": record.cpu_seconds}
        done_cost += COST.get(len(spec.mpps), 1.0)

    # 3. prediction
    from mrseg.inference.cluster import predict_slides
    from mrseg.inference.runner import file_sha256
    from mrseg.inference.settings import PredictSettings

    predict_settings = PredictSettings(
        device=device, overlap=settings.overlap, batch_size=64, loader_threads=max(1, settings.workers)
    )
    predict_keys: dict[tuple[str, str], str] = {}
    jobs = [(split, spec) for split in EVAL_SPLITS for spec in specs]
    t_pred = time.perf_counter()
    for i, (split, spec) in enumerate(jobs, start=1):
        eta = ""
        if i > 1:
            eta = f", prediction ETA {_fmt_s((time.perf_counter() - t_pred) / (i - 1) * (len(jobs) - i + 1))}"
        log.info("[3/5 predict] %s on %s slides (%d/%d)%s", spec.label, split, i, len(jobs), eta)
        ckpt = root / "runs" / spec.key / "best.pt"
        payload = {
            "stage": "predict",
            "train": train_keys[spec.key],
            "checkpoint": file_sha256(ckpt),
            "settings": predict_settings.identity(),
            "data": data_keys[split],
        }
        target = root / "preds" / split / spec.key

        def predict(ckpt: Path = ckpt, target: Path = target, split: str = split) -> _StageOut:
            results = predict_slides(ckpt, _slides(root, split), target, predict_settings, show_progress=progress)
            failed = [r for r in results if r.status == "failed"]
            if failed:
                raise MrsegError("prediction failed: " + "; ".join(f"{Path(r.slide).name}: {r.error}" for r in failed))
            rel = target.relative_to(root)
            outputs = [f"{rel}/{Path(r.slide).stem}.json" for r in results]
            return outputs, {"tiles": sum(r.tiles for r in results)}

        predict_keys[(split, spec.key)] = runner.run(
            f"predict_{split}_{spec.key}", payload, predict, clean=[target]
        ).key

    # 4. evaluation
    from mrseg.evaluation.evaluate import evaluate

    panel = _panel_stem(root)
    metrics: dict[str, dict[str, Any]] = {}
    for split in EVAL_SPLITS:
        log.info("[4/5 evaluate] %s split", split)
        panels = [panel] if split == "test" else None
        payload = {
            "stage": "evaluate",
            "predict": [predict_keys[(split, s.key)] for s in specs],
            "labels": [s.label for s in specs],
            "mpp": settings.eval_mpp,
            "panels": panels,
        }
        target = root / "eval" / split

        def score(split: str = split, target: Path = target, panels: list[str] | None = panels) -> _StageOut:
            preds = {s.label: root / "preds" / split / s.key for s in specs}
            evaluate(preds, root / "data" / split, target, mpp=settings.eval_mpp, within="tissue", panels=panels)
            outputs = [f"eval/{split}/metrics.json", f"eval/{split}/roc.png"]
            outputs += [f"eval/{split}/panel_{p}.png" for p in panels or []]
            return outputs, {}

        runner.run(f"evaluate_{split}", payload, score, clean=[target])
        metrics[split] = json.loads((target / "metrics.json").read_text())

    # 5. mimics (test split)
    from mrseg.demo.mimic import mimic_scores, pick_mimic, plot_mimic_crop

    log.info("[5/5 report] mimic analysis and report")
    payload = {"stage": "mimic", "predict": [predict_keys[("test", s.key)] for s in specs], "mpp": settings.eval_mpp}
    mimic_dir = root / "mimic"

    def mimics() -> _StageOut:
        test_dir = root / "data" / "test"
        layouts = {p.stem: test_dir / "layouts" / f"{p.stem}.geojson" for p in _slides(root, "test")}
        preds = {s.label: root / "preds" / "test" / s.key for s in specs}
        scores = mimic_scores(layouts, preds, mpp=settings.eval_mpp)
        outputs = ["mimic/mimic.json"]
        chosen = pick_mimic(layouts, settings.slide_mpp)
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

    runner.run("mimic", payload, mimics, clean=[mimic_dir])
    mimic = json.loads((mimic_dir / "mimic.json").read_text())

    # 6. report
    results = build_results(root, settings, device, specs, metrics, mimic, train_info, runner.records, panel)
    results["total_seconds"] = time.perf_counter() - t_start
    from mrseg.demo.report import write_report

    html, md = write_report(root, results)
    log.info("report: %s", html)
    return DemoResult(root, results, html, md, runner.records)


def _split_metrics(pooled: dict[str, Any]) -> dict[str, Any]:
    at = pooled["at"]["0.5"]
    best = pooled["best_dice"]
    return {
        "auc": pooled["auc"],
        "dice": at["dice"],
        "iou": at["iou"],
        "precision": at["precision"],
        "recall": at["recall"],
        "best_dice": best["dice"],
        "best_dice_iou": best["iou"],
        "best_dice_threshold": best["threshold"],
        "n_positive": pooled["n_positive"],
        "n_negative": pooled["n_negative"],
    }


def build_results(
    root: Path,
    settings: DemoSettings,
    device: str,
    specs: list[ModelSpec],
    metrics: dict[str, dict[str, Any]],
    mimic: dict[str, Any],
    train_info: dict[str, dict[str, Any]],
    records: list[StageRecord],
    panel: str,
) -> dict[str, Any]:
    """The machine-readable summary of one demo run (``results.json``)."""
    import torch

    models: dict[str, Any] = {}
    for spec in specs:
        entry: dict[str, Any] = {"label": spec.label, "mpps": list(spec.mpps), "train": train_info[spec.key]}
        for split, m in metrics.items():
            entry[split] = _split_metrics(m["models"][spec.label]["pooled"])
        entry["mimic"] = mimic["scores"].get(spec.label, {})
        models[spec.key] = entry
    return {
        "mrseg_version": __version__,
        "preset": settings.preset,
        "seed": settings.seed,
        "settings": settings.to_dict(),
        "device": device,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
        "splits": {
            split: {"slides": [f["name"] for f in _synth_facts(root, split)], "facts": _synth_facts(root, split)}
            for split in SPLITS
        },
        "panel_slide": panel,
        "models": models,
        "mimic_crop": mimic.get("crop", {}),
        "stages": [
            {"name": r.name, "seconds": r.seconds, "cpu_seconds": r.cpu_seconds, "reused": r.cached, "info": r.info}
            for r in records
        ],
        "eval": {"mpp": settings.eval_mpp, "within": "tissue", "positive": "label > 0"},
    }
