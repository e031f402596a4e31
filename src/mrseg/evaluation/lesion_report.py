"""The lesion-level outputs of an evaluation: ``froc.csv``, ``slides.csv``, ``froc.png``, ``slide_roc.png``.

- ``froc.csv``: one row per model and FP rate (``fp_per_slide``, ``sensitivity``), then a ``mean``
  row holding the challenge score, with the detection rule, the lesions and slides counted;
- ``slides.csv``: one row per model and slide: tumour (1/0), the slide score, lesions, ITCs,
  lesions detected, detections, false positives and detections ignored inside ITCs; then a
  ``pooled`` row per model with the slide-level ROC AUC in ``slide_score``'s place.

Everything comes from the ``lesions`` entries of ``metrics.json``
(:func:`mrseg.evaluation.lesions.lesion_summary`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mrseg.core.atomic import atomic_write_text
from mrseg.evaluation.plots import plot_froc, plot_roc

FROC_COLUMNS = ("model", "fp_per_slide", "sensitivity", "detection", "n_lesions", "n_slides")
SLIDE_COLUMNS = ("model", "slide", "tumour", "slide_score", "lesions", "itc", "detected", "detections", "fp",
                 "ignored_itc")  # fmt: skip


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.6g}"
    return str(value)


def froc_csv(result: Mapping[str, Any]) -> str:
    """``froc.csv`` of a ``metrics.json`` dictionary with lesion metrics."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FROC_COLUMNS)
    for model, m in result["models"].items():
        froc = m["lesions"]["froc"]
        tail = [froc["detection"], froc["n_lesions"], froc["n_slides"]]
        for rate, sensitivity in froc["sensitivity"].items():
            writer.writerow([model, rate, _fmt(sensitivity), *tail])
        writer.writerow([model, "mean", _fmt(froc["score"]), *tail])
    return buffer.getvalue()


def slides_csv(result: Mapping[str, Any]) -> str:
    """``slides.csv`` of a ``metrics.json`` dictionary with lesion metrics."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SLIDE_COLUMNS)
    keys = SLIDE_COLUMNS[2:]
    for model, m in result["models"].items():
        lesions = m["lesions"]
        for stem, row in lesions["per_slide"].items():
            writer.writerow([model, stem, *(_fmt(row[k]) for k in keys)])
        slide = lesions["slide"]
        writer.writerow([model, "pooled", slide["n_tumour"], _fmt(slide["auc"]), *[""] * (len(keys) - 2)])
    return buffer.getvalue()


def write_lesion_outputs(out_dir: Path, result: Mapping[str, Any]) -> None:
    """Write ``froc.csv``, ``slides.csv``, ``froc.png`` and ``slide_roc.png`` into ``out_dir`` (atomically)."""
    atomic_write_text(out_dir / "froc.csv", froc_csv(result))
    atomic_write_text(out_dir / "slides.csv", slides_csv(result))
    lesion_settings = result["settings"]["lesions"]
    frocs = {
        name: (
            np.asarray(m["lesions"]["froc"]["curve"]["fp_per_slide"]),
            np.asarray(m["lesions"]["froc"]["curve"]["sensitivity"]),
            float(m["lesions"]["froc"]["score"]),
        )
        for name, m in result["models"].items()
    }
    rule = lesion_settings["detection"]
    plot_froc(out_dir / "froc.png", frocs, lesion_settings["fp_rates"], title=f"Lesion-level FROC ({rule} detections)")
    rocs = {
        name: (
            np.asarray(m["lesions"]["slide"]["roc"]["fpr"]),
            np.asarray(m["lesions"]["slide"]["roc"]["tpr"]),
            float(m["lesions"]["slide"]["auc"]),
        )
        for name, m in result["models"].items()
    }
    score = lesion_settings["slide_score"]
    plot_roc(out_dir / "slide_roc.png", rocs, title=f"Slide-level ROC (slide score: {score})")


__all__ = ["FROC_COLUMNS", "SLIDE_COLUMNS", "froc_csv", "slides_csv", "write_lesion_outputs"]
