"""The demo's stages: data -> train (six models) -> predict (val, test by default) -> evaluate -> mimics -> report.

Folder layout of ``DIR`` (every path below is relative to it)::

    data/{train,val,test,val2}/ mrseg synth outputs (slides, annotations, masks, layouts, manifest.csv)
    data/train_val.csv          training manifest: train slides (split=train) and val slides (split=val)
    runs/<model>/               mrseg train run folders (best.pt, last.pt, metrics.csv, config.yaml...)
    preds/<split>/<model>/      mrseg predict outputs (<stem>.tif, <stem>_overlay.png, <stem>.json)
    eval/<split>/               mrseg evaluate outputs (metrics.json, metrics.csv, roc.png, panel_<stem>.png)
    mimic/                      mimic scores (mimic.json) and the close-up (mimic_crop.png)
    results.json, report.html, report.md, *.png
    .stages/<stage>.json        stage records (the cache)

Each stage's key hashes its resolved settings and the keys of the stages it reads, so changing a
setting re-runs exactly the stages that depend on it; ``fresh=True`` re-runs everything. The
stages are the functions of :mod:`mrseg.demo.stages`; :func:`run_demo` chains them and
:func:`report_stage` (never cached) writes the report.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrseg.core.atomic import atomic_write_text
from mrseg.core.device import resolve_device
from mrseg.core.errors import ConfigError
from mrseg.core.locks import output_lock
from mrseg.demo.cache import STAGE_DIR, StageRecord, StageRunner
from mrseg.demo.report import write_report
from mrseg.demo.results import build_results
from mrseg.demo.settings import DemoSettings, default_settings
from mrseg.demo.stages import (
    DemoRun,
    data_stage,
    evaluate_stage,
    mimic_stage,
    predict_stage,
    train_stage,
    write_train_manifest,
)

log = logging.getLogger(__name__)


@dataclass
class DemoResult:
    """What :func:`run_demo` produced: the results dictionary (``results.json``) and the report paths."""

    out_dir: Path
    results: dict[str, Any]
    report_html: Path
    report_md: Path
    stages: list[StageRecord] = field(default_factory=list)


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
    settings = settings or default_settings()
    root = Path(out_dir).resolve()
    check_demo_folder(root)
    with output_lock(root.parent / f".{root.name}.lock", f"demo folder {out_dir}"):
        (root / STAGE_DIR).mkdir(parents=True, exist_ok=True)  # marks the folder as a demo's
        return _run_stages(root, settings, fresh, progress)


def check_demo_folder(root: Path) -> None:
    """Refuse a ``root`` that is a file, or a non-empty folder without ``.stages``.

    Such a folder is not a demo's: the stages would replace its files.

    Raises
    ------
    ConfigError
        Naming the folder.
    """
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root}: demo folder exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and not (root / STAGE_DIR).is_dir():
        raise ConfigError(
            f"{root}: not a demo folder (no {STAGE_DIR}/) and not empty; the demo writes only into an empty "
            "folder or one of its own: choose another --out"
        )


def _run_stages(root: Path, settings: DemoSettings, fresh: bool, progress: bool) -> DemoResult:
    """Every stage of :func:`run_demo` in ``root`` (held under its lock)."""
    t_start = time.perf_counter()
    device = str(resolve_device(settings.device))
    run = DemoRun(root, settings, StageRunner(root, fresh), device, settings.model_specs(), progress)
    log.info(
        "demo (%s preset, seed %d) in %s on %s: %d models, slides %s",
        settings.preset, settings.seed, root, run.device, len(run.specs),
        ", ".join(f"{s} {v.n_slides}x{v.size_px}px" for s, v in settings.splits.items()),
    )  # fmt: skip
    return run_stage_sequence(run, t_start)


def run_stage_sequence(run: DemoRun, t_start: float) -> DemoResult:
    """Data, training, prediction, evaluation, mimics and report of ``run`` (``t_start``: ``perf_counter`` seconds).

    The stage order of :func:`run_demo`, for any :class:`DemoRun` (e.g. other model specs, as
    ``benchmarks/backbones.py`` uses it).
    """
    data_keys = data_stage(run)
    train_keys, train_info = train_stage(run, data_keys, write_train_manifest(run.root))
    predict_keys = predict_stage(run, data_keys, train_keys)
    metrics, panel = evaluate_stage(run, predict_keys)
    mimic = mimic_stage(run, predict_keys)
    return report_stage(run, metrics, mimic, train_info, panel, t_start)


def report_stage(
    run: DemoRun,
    metrics: dict[str, dict[str, Any]],
    mimic: dict[str, Any],
    train_info: dict[str, dict[str, Any]],
    panel: str,
    t_start: float,
) -> DemoResult:
    """Write ``results.json``, ``report.md``, ``report.html`` and the report's figures (never cached)."""
    results = build_results(
        run.root, run.settings, run.device, run.specs, metrics, mimic, train_info, run.runner.records, panel
    )
    results["total_seconds"] = time.perf_counter() - t_start
    if "test" not in run.eval_splits:  # tuning mode: numbers only, the report is about held-out test slides
        path = atomic_write_text(run.root / "results.json", json.dumps(results, indent=2, default=str))
        log.info("results (no test split, no report): %s", path)
        return DemoResult(run.root, results, path, path, run.runner.records)
    html, md = write_report(run.root, results)
    log.info("report: %s", html)
    return DemoResult(run.root, results, html, md, run.runner.records)


__all__ = ["DemoResult", "check_demo_folder", "report_stage", "run_demo", "run_stage_sequence"]
