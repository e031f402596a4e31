"""The outputs of an evaluation: ``metrics.json``, ``metrics.csv`` and the figures.

``metrics.json`` (the dictionary :func:`build_result` returns)::

    settings     {mpp, within, bins, truth, positive, slides, missing_truth, lesions}; multi-class adds
                 {classes, macro_over}
    predictions  {model: prediction folder}
    slides       [stem, ...]   (the slides evaluated)
    missing      {truth: [stems skipped for want of truth], assumed_normal: [stems without truth counted
                  tumour-free], predictions: {model: [stems it lacks, skipped for every model]}}
    models       {model: {pooled: {auc, n_positive, n_negative, at: {"0.5": scores}, best_dice: scores,
                                   histogram: {bins, pos, neg}},
                          per_slide: {stem: the same without histogram},
                          multiclass: {predicted_from, pooled: class summary + histograms,
                                       per_slide: {stem: class summary}}}}     (multi-class only)

with ``scores = {dice, iou, precision, recall, specificity, accuracy, tp, fp, fn, tn, threshold}``
and a class summary ``{classes: {name: {label, auc, dice, iou, ..., n_truth, n_predicted}}, macro:
{auc, dice, iou, precision, recall}, accuracy, confusion: [[count truth t predicted p]]}``
(:meth:`mrseg.evaluation.metrics.ClassMetrics.summary`). ``metrics.csv`` has one row per model,
slide (or ``pooled``) and threshold kind; multi-class files add a ``class`` column and rows per
class and for the macro averages. Figures: ``roc.png`` (foreground ROC of every model) and, for
multi-class, ``roc_classes.png`` and ``confusion.png``. With lesion metrics every model gets a
``lesions`` entry and :mod:`mrseg.evaluation.lesion_report` writes ``froc.csv``, ``slides.csv``,
``froc.png`` and ``slide_roc.png``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mrseg.core.atomic import atomic_write_text
from mrseg.core.errors import ConfigError
from mrseg.core.prediction_record import load_record_json
from mrseg.evaluation.lesion_report import write_lesion_outputs
from mrseg.evaluation.metrics import MACRO_METRICS
from mrseg.evaluation.plan import EvaluationPlan
from mrseg.evaluation.plots import plot_class_rocs, plot_confusion, plot_roc
from mrseg.evaluation.scores import Scores

#: Columns of ``metrics.csv`` (multi-class files insert ``class`` after ``slide``).
CSV_COLUMNS: tuple[str, ...] = (
    "model", "slide", "auc", "threshold_kind", "threshold", "dice", "iou", "precision", "recall",
    "specificity", "accuracy", "n_positive", "n_negative",
)  # fmt: skip
_SCORE_COLUMNS = ("dice", "iou", "precision", "recall", "specificity", "accuracy")


def build_result(
    plan: EvaluationPlan, pooled: Mapping[str, Scores], per_slide: Mapping[str, Mapping[str, Scores]]
) -> dict[str, Any]:
    """The content of ``metrics.json`` (module docstring) from the pooled and per-slide scores."""
    settings = plan.settings
    result: dict[str, Any] = {
        "settings": {
            "mpp": settings.mpp,
            "within": settings.within,
            "bins": settings.bins,
            "truth": plan.truth_source,
            "positive": "label > 0",
            "slides": list(settings.slides) if settings.slides is not None else None,
            "missing_truth": settings.missing_truth,
            "lesions": settings.lesions.to_dict() if settings.lesions is not None else None,
        },
        "predictions": dict(plan.folders),
        "slides": list(plan.stems),
        "missing": plan.selection.to_dict(),
        "models": {name: _model_result(pooled[name], per_slide[name], plan.stems) for name in plan.models},
    }
    if plan.multiclass:
        result["settings"] |= {"classes": list(plan.labels.classes), "macro_over": list(plan.labels.foreground)}
    return result


def _model_result(pooled: Scores, per_slide: Mapping[str, Scores], stems: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "pooled": pooled.binary.summary() | {"histogram": pooled.binary.to_dict()},
        "per_slide": {stem: per_slide[stem].binary.summary() for stem in stems},
    }
    if pooled.classes is not None:
        out["multiclass"] = {
            "predicted_from": sorted(pooled.predicted_from),
            "pooled": pooled.classes.summary() | {"histograms": pooled.classes.histograms_dict()},
            "per_slide": {stem: _class_summary(per_slide[stem]) for stem in stems},
        }
    return out


def _class_summary(scores: Scores) -> dict[str, Any]:
    assert scores.classes is not None  # multi-class plans give every Scores its ClassMetrics
    return scores.classes.summary()


#: The files of a report that a new evaluation replaces.
REPORT_FILES = ("metrics.json", "metrics.csv")


def check_report_folder(out_dir: Path) -> None:
    """Refuse an ``out_dir`` whose ``metrics.json``/``metrics.csv`` an evaluation did not write.

    They would be replaced.

    Raises
    ------
    ConfigError
        Naming the file.
    """
    document = load_record_json(out_dir / "metrics.json")
    ours = document is not None and isinstance(document.get("models"), dict)
    for name in REPORT_FILES:
        if (out_dir / name).exists() and not ours:
            raise ConfigError(
                f"{out_dir / name}: exists and is not part of an mrseg evaluate report (no metrics.json of one "
                "beside it); it will not be replaced: choose another --out"
            )


def write_outputs(out_dir: Path, result: Mapping[str, Any], plan: EvaluationPlan, pooled: Mapping[str, Scores]) -> None:
    """Write ``metrics.json``, ``metrics.csv`` and the figures into ``out_dir`` (each atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "metrics.json", json.dumps(result, indent=2, allow_nan=True))
    atomic_write_text(out_dir / "metrics.csv", metrics_csv(result))
    settings = plan.settings
    where = f"{settings.mpp:g} µm/px ({settings.within})"
    curves = {name: (*s.binary.roc()[:2], s.binary.auc()) for name, s in pooled.items()}
    plot_roc(out_dir / "roc.png", curves, title=f"Pixel-level ROC at {where}")
    classes = {name: s.classes for name, s in pooled.items() if s.classes is not None}
    if classes:
        colors = dict(zip(plan.labels.classes, plan.labels.colors, strict=True))
        rocs = {name: c.roc_curves() for name, c in classes.items()}
        plot_class_rocs(out_dir / "roc_classes.png", rocs, colors, title=f"One-vs-rest ROC per class at {where}")
        matrices = {name: c.confusion.counts for name, c in classes.items()}
        plot_confusion(out_dir / "confusion.png", matrices, plan.labels.classes, title=f"Confusion at {where}")
    if settings.lesions is not None:
        write_lesion_outputs(out_dir, result)


def metrics_csv(result: Mapping[str, Any]) -> str:
    """``metrics.csv``: binary rows (``class`` column ``foreground`` in multi-class files), then class rows."""
    multiclass = "classes" in result["settings"]
    columns = list(CSV_COLUMNS)
    if multiclass:
        columns.insert(2, "class")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for model, m in result["models"].items():
        rows = [("pooled", m["pooled"]), *list(m["per_slide"].items())]
        for slide, summary in rows:
            for row in _binary_rows(model, slide, summary):
                writer.writerow([*row[:2], "foreground", *row[2:]] if multiclass else row)
        if multiclass:
            classes = m["multiclass"]
            for slide, summary in [("pooled", classes["pooled"]), *list(classes["per_slide"].items())]:
                writer.writerows(_class_rows(model, slide, summary))
    return buffer.getvalue()


def _binary_rows(model: str, slide: str, summary: Mapping[str, Any]) -> list[list[Any]]:
    rows = []
    for kind, scores in [*(("at", s) for s in summary["at"].values()), ("best_dice", summary["best_dice"])]:
        label = "best_dice" if kind == "best_dice" else "fixed"
        rows.append(
            [model, slide, _fmt(summary["auc"]), label, _fmt(scores["threshold"])]
            + [_fmt(scores[k]) for k in _SCORE_COLUMNS]
            + [summary["n_positive"], summary["n_negative"]]
        )
    return rows


def _class_rows(model: str, slide: str, summary: Mapping[str, Any]) -> list[list[Any]]:
    """One ``argmax`` row per class (one-vs-rest), then a ``macro`` row (mean over the foreground classes)."""
    rows = []
    for name, c in summary["classes"].items():
        rows.append(
            [model, slide, name, _fmt(c["auc"]), "argmax", ""]
            + [_fmt(c[k]) for k in _SCORE_COLUMNS]
            + [c["n_truth"], c["fp"] + c["tn"]]
        )
    macro = summary["macro"]
    cells = [_fmt(macro[k]) if k in MACRO_METRICS else "" for k in _SCORE_COLUMNS]
    rows.append([model, slide, "macro", _fmt(macro["auc"]), "argmax", "", *cells, "", ""])
    return rows


def _fmt(value: float) -> str:
    return "nan" if value != value else f"{value:.6g}"


__all__ = ["CSV_COLUMNS", "REPORT_FILES", "build_result", "check_report_folder", "metrics_csv", "write_outputs"]
