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
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from mrseg import __version__
from mrseg.core.atomic import atomic_write_text
from mrseg.demo.bodies import fit_model, predict_model, predict_split
from mrseg.demo.cache import StageRecord, StageRunner, fmt_seconds
from mrseg.demo.mimic import mimic_scores, pick_mimic, plot_mimic_crop
from mrseg.demo.parallel import ParallelStage, StageOut, Task, run_stages
from mrseg.demo.results import synth_facts
from mrseg.demo.settings import DemoSettings, ModelSpec
from mrseg.evaluation.evaluate import evaluate
from mrseg.evaluation.settings import LesionSettings
from mrseg.inference.runner import file_sha256
from mrseg.inference.settings import PredictSettings
from mrseg.synth import SynthParams, generate
from mrseg.training.config import load_config, update_config

log = logging.getLogger(__name__)

#: Relative training cost of a model (U-Net = 1), used for ETAs and the order of parallel jobs.
COST = {1: 1.0, 4: 2.5}


@dataclass
class DemoRun:
    """One demo run: its folder, settings, stage runner, device and models (shared by every stage)."""

    root: Path
    settings: DemoSettings
    runner: StageRunner
    device: str
    specs: list[ModelSpec]
    progress: bool

    @property
    def parallel(self) -> bool:
        """Models train and predict in ``settings.jobs`` worker processes (more than one job and model)."""
        return self.settings.jobs > 1 and len(self.specs) > 1

    @property
    def eval_splits(self) -> list[str]:
        """The evaluated splits, in generation order."""
        return [s for s in self.settings.data_splits() if s in self.settings.eval_splits]


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


def _generate_split(run: DemoRun, split: str) -> StageOut:
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
    """Generate the train, val and evaluated slides (``data/<split>/``); returns each split's stage key."""
    keys: dict[str, str] = {}
    splits = run.settings.data_splits()
    for i, split in enumerate(splits, start=1):
        log.info("[1/5 data] %s slides (%d/%d)", split, i, len(splits))
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


def _train_payload(config: Any, data_keys: dict[str, str]) -> dict[str, Any]:
    return {"stage": "train", "config": _config_identity(config), "data": [data_keys["train"], data_keys["val"]]}


def train_stage(
    run: DemoRun, data_keys: dict[str, str], manifest: Path
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Train every model on ``manifest`` (``runs/<model>/``); returns stage keys and training facts by model.

    With :attr:`DemoRun.parallel` the models train in ``settings.jobs`` worker processes (longest first).
    """
    if run.parallel:
        records = _train_parallel(run, data_keys, manifest)
    else:
        records = _train_sequential(run, data_keys, manifest)
    keys = {k: r.key for k, r in records.items()}
    info = {k: r.info | {"seconds": r.seconds, "cpu_seconds": r.cpu_seconds} for k, r in records.items()}
    return keys, info


def _train_sequential(run: DemoRun, data_keys: dict[str, str], manifest: Path) -> dict[str, StageRecord]:
    records: dict[str, StageRecord] = {}
    total_cost = sum(COST.get(len(s.mpps), 1.0) for s in run.specs)
    done_cost, t_train = 0.0, time.perf_counter()
    for i, spec in enumerate(run.specs, start=1):
        eta = ""
        if done_cost > 0:
            rate = (time.perf_counter() - t_train) / done_cost
            eta = f", training ETA {fmt_seconds(rate * (total_cost - done_cost))}"
        log.info("[2/5 train] %s (%d/%d)%s", spec.label, i, len(run.specs), eta)
        config = model_config(run.settings, spec, manifest, progress=run.progress)
        run_dir = run.root / "runs" / spec.key
        body = partial(fit_model, config.to_dict(), str(run_dir), run.device, spec.label, run.progress)
        records[spec.key] = run.runner.run(
            f"train_{spec.key}", _train_payload(config, data_keys), body, clean=[run_dir]
        )
        done_cost += COST.get(len(spec.mpps), 1.0)
    return records


def _train_parallel(run: DemoRun, data_keys: dict[str, str], manifest: Path) -> dict[str, StageRecord]:
    stages = []
    for spec in run.specs:
        config = model_config(run.settings, spec, manifest, progress=False)
        run_dir = run.root / "runs" / spec.key
        args = (config.to_dict(), str(run_dir), run.device, spec.label, False)
        task = Task(f"train_{spec.key}", fit_model, args, COST.get(len(spec.mpps), 1.0))
        stages.append(ParallelStage(_train_payload(config, data_keys), task, (run_dir,)))
    log.info("[2/5 train] %d models, %d at a time (one process each)", len(stages), run.settings.jobs)
    records = run_stages(run.runner, stages, run.settings.jobs)
    return {spec.key: records[f"train_{spec.key}"] for spec in run.specs}


# -------------------------------------------------------------------------------------- 3. predict


def _predict_payload(keys: tuple[str, str], ckpt: Path, settings: PredictSettings) -> dict[str, Any]:
    train_key, data_key = keys
    return {
        "stage": "predict",
        "train": train_key,
        "checkpoint": file_sha256(ckpt),
        "settings": settings.identity(),
        "data": data_key,
    }


def predict_stage(run: DemoRun, data_keys: dict[str, str], train_keys: dict[str, str]) -> dict[tuple[str, str], str]:
    """Predict the evaluated slides with every model (``preds/<split>/<model>/``); stage keys by (split, model)."""
    settings = PredictSettings(
        device=run.device, overlap=run.settings.overlap, batch_size=64, loader_threads=max(1, run.settings.workers)
    )
    jobs = [(split, spec) for split in run.eval_splits for spec in run.specs]
    if run.parallel:
        return _predict_parallel(run, jobs, data_keys, train_keys, settings)
    keys: dict[tuple[str, str], str] = {}
    t_pred = time.perf_counter()
    for i, (split, spec) in enumerate(jobs, start=1):
        eta = ""
        if i > 1:
            eta = f", prediction ETA {fmt_seconds((time.perf_counter() - t_pred) / (i - 1) * (len(jobs) - i + 1))}"
        log.info("[3/5 predict] %s on %s slides (%d/%d)%s", spec.label, split, i, len(jobs), eta)
        ckpt = run.root / "runs" / spec.key / "best.pt"
        payload = _predict_payload((train_keys[spec.key], data_keys[split]), ckpt, settings)
        target = run.root / "preds" / split / spec.key
        slides = _slides(run.root, split)
        body = partial(predict_split, ckpt, slides, target, run.root, settings, run.progress)
        keys[(split, spec.key)] = run.runner.run(f"predict_{split}_{spec.key}", payload, body, clean=[target]).key
    return keys


def _predict_parallel(
    run: DemoRun,
    jobs: list[tuple[str, ModelSpec]],
    data_keys: dict[str, str],
    train_keys: dict[str, str],
    settings: PredictSettings,
) -> dict[tuple[str, str], str]:
    # several processes: bound each one's memory and threads
    one = replace(settings, loader_threads=1, writer_threads=1, batch_size=32)
    stages = []
    for split, spec in jobs:
        ckpt = run.root / "runs" / spec.key / "best.pt"
        payload = _predict_payload((train_keys[spec.key], data_keys[split]), ckpt, settings)
        target = run.root / "preds" / split / spec.key
        slides = [str(p) for p in _slides(run.root, split)]
        cost = COST.get(len(spec.mpps), 1.0) * len(slides) / spec.mpps[0] ** 2  # tiles ~ 1 / finest mpp^2
        args = (str(ckpt), slides, str(target), str(run.root), one)
        stages.append(ParallelStage(payload, Task(f"predict_{split}_{spec.key}", predict_model, args, cost), (target,)))
    log.info("[3/5 predict] %d model x split jobs, %d at a time (one process each)", len(stages), run.settings.jobs)
    records = run_stages(run.runner, stages, run.settings.jobs)
    return {(split, spec.key): records[f"predict_{split}_{spec.key}"].key for split, spec in jobs}


# ------------------------------------------------------------------------------------- 4. evaluate


def _panel_stem(root: Path, split: str) -> str:
    """The slide of ``split`` shown in the qualitative panel: most tumour area, ties broken by mimic area."""
    facts = synth_facts(root, split)
    best = max(facts, key=lambda f: (float(f.get("tumour_mm2", 0.0)), float(f.get("mimic_mm2", 0.0))))
    return str(best["name"])


def _lesions(split: str) -> LesionSettings | None:
    """The test split is also scored lesion by lesion (CAMELYON16's FROC, default rules)."""
    return LesionSettings() if split == "test" else None


def _score(run: DemoRun, split: str, panels: list[str] | None) -> StageOut:
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
    """Evaluate the predictions of every evaluated split (``eval/<split>/``); metrics.json by split, the panel slide.

    The panel shows a slide of :meth:`~mrseg.demo.settings.DemoSettings.shown_split` (``test`` by default).
    """
    shown = run.settings.shown_split()
    panel = _panel_stem(run.root, shown)
    metrics: dict[str, dict[str, Any]] = {}
    for split in run.eval_splits:
        log.info("[4/5 evaluate] %s split", split)
        panels = [panel] if split == shown else None
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


def _layouts(root: Path, split: str) -> dict[str, Path]:
    split_dir = root / "data" / split
    return {p.stem: split_dir / "layouts" / f"{p.stem}.geojson" for p in _slides(root, split)}


def _mimics(run: DemoRun) -> StageOut:
    root, mimic_dir, shown = run.root, run.root / "mimic", run.settings.shown_split()
    by_split: dict[str, Any] = {}
    for split in run.eval_splits:
        preds = {s.label: root / "preds" / split / s.key for s in run.specs}
        by_split[split] = mimic_scores(_layouts(root, split), preds, mpp=run.settings.eval_mpp)
    shown_dir = root / "data" / shown
    layouts = _layouts(root, shown)
    preds = {s.label: root / "preds" / shown / s.key for s in run.specs}
    outputs = ["mimic/mimic.json"]
    chosen = pick_mimic(layouts, run.settings.slide_mpp)
    crop: dict[str, Any] = {}
    if chosen is not None:
        stem, lesion = chosen
        plot_mimic_crop(
            mimic_dir / "mimic_crop.png", shown_dir / "slides" / f"{stem}.tif",
            shown_dir / "annotations" / f"{stem}.xml", lesion, preds, stem,
        )  # fmt: skip
        outputs.append("mimic/mimic_crop.png")
        crop = {"slide": stem, "bounds_l0": list(lesion.bounds_l0)}
    else:
        log.warning("no mimic on the %s slides: no close-up figure", shown)
    data = {"scores": by_split[shown], "split": shown, "scores_by_split": by_split, "crop": crop}
    atomic_write_text(mimic_dir / "mimic.json", json.dumps(data, indent=2))
    return outputs, {}


def mimic_stage(run: DemoRun, predict_keys: dict[tuple[str, str], str]) -> dict[str, Any]:
    """Score every evaluated split's predictions on tumour nests and mimics (``mimic/``); returns ``mimic.json``.

    ``scores`` (and the close-up) are those of the shown split (``test`` by default); ``scores_by_split`` all.
    """
    log.info("[5/5 report] mimic analysis and report")
    payload = {
        "stage": "mimic",
        "predict": [predict_keys[(split, s.key)] for split in run.eval_splits for s in run.specs],
        "mpp": run.settings.eval_mpp,
        "shown": run.settings.shown_split(),
    }
    mimic_dir = run.root / "mimic"
    run.runner.run("mimic", payload, partial(_mimics, run), clean=[mimic_dir])
    return dict(json.loads((mimic_dir / "mimic.json").read_text()))


__all__ = [
    "COST",
    "DemoRun",
    "data_stage",
    "evaluate_stage",
    "mimic_stage",
    "model_config",
    "predict_stage",
    "train_stage",
    "write_train_manifest",
]
