"""Pixel-level evaluation of prediction maps against ground truth, streaming and memory-bounded.

Every slide is evaluated on one **evaluation grid**: ``ReadGrid.covering(dimensions, slide_mpp, mpp)``,
the box ``(0, 0, W0, H0)`` of level 0 cut into ``w x h`` pixels with ``w = max(1, round(W0 *
slide_mpp / mpp))`` (the read grid of ``docs/architecture.md``), at the stated ``mpp``. The grid is
processed in strips of rows (:func:`strips`): the predictions are sampled (nearest, from the
closest pyramid level of each map TIFF that is at least as fine, :mod:`mrseg.evaluation.maps`), the
truth is rasterised with the label spec of the predictions and, with ``within="tissue"``, the
tissue mask of the slide restricts the pixels counted (:mod:`mrseg.evaluation.truth`).

Each model keeps one :class:`Scores` per slide and one pooled over all slides:

- **binary** (every task): positive pixels are those with truth label > 0 (every lesion class
  against the rest); the prediction is the foreground probability map ``<stem>.tif``;
- **multi-class** (label specs with more than two classes): one-vs-rest histograms per class
  (class ``k``'s map against truth ``== k``; the background's probability is ``1 -`` the foreground
  map) and the confusion matrix of truth label against predicted label (the label map, or the
  argmax of the class maps when none was written).

With ``EvaluateSettings.lesions``, each slide is also scored lesion by lesion (CAMELYON16's FROC)
and as a whole (slide score, slide-level ROC AUC): :mod:`mrseg.evaluation.lesions`.

:mod:`mrseg.evaluation.report` writes the outputs (``metrics.json``, ``metrics.csv``, figures;
:mod:`mrseg.evaluation.lesion_report` the lesion-level ones).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from mrseg.evaluation.lesions import SlideLesionScore, lesion_summary, score_lesions
from mrseg.evaluation.maps import SlideMaps
from mrseg.evaluation.panel import write_panel
from mrseg.evaluation.plan import EvaluationPlan, plan_evaluation
from mrseg.evaluation.report import build_result, check_report_folder, write_outputs
from mrseg.evaluation.scores import Scores
from mrseg.evaluation.settings import EvaluateSettings
from mrseg.evaluation.truth import open_truth
from mrseg.wsi.geometry import ReadGrid

log = logging.getLogger(__name__)

#: Pixels of the evaluation grid processed at once (memory ~ pixels x 10 bytes per model and map).
STRIP_PIXELS = 1 << 22


def strips(grid: ReadGrid, pixels: int = STRIP_PIXELS) -> Iterator[ReadGrid]:
    """The grid as consecutive strips of whole rows, each of at most ``pixels`` pixels (at least one row)."""
    step = max(1, pixels // grid.width)
    for v0 in range(0, grid.height, step):
        yield grid.rows(v0, min(grid.height, v0 + step))


def score_slide(
    plan: EvaluationPlan, stem: str, out_dir: Path
) -> tuple[dict[str, Scores], dict[str, SlideLesionScore]]:
    """Every model's :class:`Scores` on one slide (and its panel when asked), strip by strip, and with
    ``settings.lesions`` its :class:`~mrseg.evaluation.lesions.SlideLesionScore` (else an empty dict)."""
    records = plan.slide_records(stem)
    first = next(iter(records.values()))
    settings = plan.settings
    grid = ReadGrid.covering(first.slide_dimensions, first.slide_mpp, settings.mpp)
    scores = {name: Scores.empty(plan) for name in records}
    with contextlib.ExitStack() as stack:
        truth = stack.enter_context(
            open_truth(plan.truth[stem], first, plan.labels, within=settings.within, tissue_mpp=settings.tissue_mpp)
        )
        maps = {
            name: stack.enter_context(SlideMaps(record, settings.mpp, classes=plan.multiclass))
            for name, record in records.items()
        }
        for strip in strips(grid):
            labels = truth.labels(strip)
            valid = truth.valid(strip)
            for name, slide_maps in maps.items():
                scores[name].add(slide_maps, strip, labels, valid)
        if stem in plan.panels:
            foreground = {name: m.foreground for name, m in maps.items()}
            write_panel(out_dir, stem, truth, first, foreground, settings.panel_max_side)
        lesions = score_lesions(settings.lesions, truth, records) if settings.lesions is not None else {}
    return scores, lesions


def evaluate(
    preds: Mapping[str, str | os.PathLike[str]],
    truth: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    settings: EvaluateSettings | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """Evaluate one or more prediction folders against ground truth; write metrics.json, metrics.csv, figures.

    Parameters
    ----------
    preds
        ``{model name: mrseg predict output folder}``.
    truth
        Manifest CSV, folder with ``manifest.csv``, or folder of annotation/mask files
        (see :func:`mrseg.evaluation.truth.find_truth`).
    out_dir
        Where the reports go (``metrics.json``, ``metrics.csv``, ``roc.png``, ``panel_<stem>.png``;
        multi-class: also ``roc_classes.png`` and ``confusion.png``; with lesions: ``froc.csv``,
        ``slides.csv``, ``froc.png``, ``slide_roc.png``).
    settings
        :class:`~mrseg.evaluation.settings.EvaluateSettings` (defaults when None).
    **changes
        Fields of the settings to change (``mpp=2.0``, ``within="slide"``, ``bins``, ``tissue_mpp``,
        ``panels``, ``panel_max_side``, ``slides``, ``missing_truth``, ``lesions=LesionSettings()``).

    Returns
    -------
    dict
        The content of metrics.json (see ``docs/evaluation.md``).

    Raises
    ------
    DataError
        Missing folders/files, no predictions, no slide with truth and every model's prediction
        (slides lacking either are otherwise skipped with a warning and listed under ``missing``),
        predictions with different label specs, or (multi-class) truth labels outside the label spec.
    ConfigError
        Invalid settings.
    """
    settings = replace(settings or EvaluateSettings(), **changes)
    out_dir = Path(out_dir)
    check_report_folder(out_dir)
    plan = plan_evaluation(preds, truth, settings)
    pooled = {name: Scores.empty(plan) for name in plan.models}
    per_slide: dict[str, dict[str, Scores]] = {name: {} for name in plan.models}
    lesions: dict[str, dict[str, SlideLesionScore]] = {name: {} for name in plan.models}
    for stem in plan.stems:
        pixel_scores, lesion_scores = score_slide(plan, stem, out_dir)
        for name, scores in pixel_scores.items():
            per_slide[name][stem] = scores
            pooled[name] += scores
            _log_slide(name, stem, scores)
        for name, lesion in lesion_scores.items():
            lesions[name][stem] = lesion
    result = build_result(plan, pooled, per_slide)
    if settings.lesions is not None:
        for name in plan.models:
            result["models"][name]["lesions"] = lesion_summary(settings.lesions, lesions[name])
    write_outputs(out_dir, result, plan, pooled)
    return result


def _log_slide(name: str, stem: str, scores: Scores) -> None:
    if scores.classes is None:
        log.info("%s / %s: AUC %.4f", name, stem, scores.binary.auc())
        return
    macro = scores.classes.summary()["macro"]
    log.info(
        "%s / %s: AUC %.4f, macro AUC %.4f, macro Dice %.4f",
        name, stem, scores.binary.auc(), macro["auc"], macro["dice"],
    )  # fmt: skip


__all__ = ["STRIP_PIXELS", "evaluate", "score_slide", "strips"]
