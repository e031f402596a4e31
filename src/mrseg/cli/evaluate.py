"""``mrseg evaluate``: pixel-level metrics and figures (a thin layer over :func:`mrseg.evaluation.evaluate.evaluate`),
with ``--froc`` also CAMELYON16's lesion-level FROC and the slide-level ROC AUC.

Every option's default is :class:`~mrseg.evaluation.settings.EvaluateSettings`'s or
:class:`~mrseg.evaluation.settings.LesionSettings`'s.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, get_args

import typer

from mrseg.cli.app import command
from mrseg.core.errors import ConfigError
from mrseg.evaluation.settings import (
    DetectionRule,
    EvaluateSettings,
    LesionSettings,
    MissingTruth,
    SlideScoreRule,
    Within,
)
from mrseg.evaluation.slide_lists import resolve_slides

log = logging.getLogger("mrseg.cli")

#: The library's defaults, shown by every option below.
_DEFAULTS = EvaluateSettings()
_LESIONS = LesionSettings()


@command("evaluate", renamed={"--mpp": "--eval-mpp"})
def evaluate_command(
    pred: list[str] = typer.Option(
        ...,
        "--pred",
        metavar="[NAME=]DIR",
        help="Prediction folder of mrseg predict, or NAME=DIR; repeat for several models.",
    ),
    truth: Path = typer.Option(..., "--truth", help="Folder of annotations/masks, a manifest CSV, or a synth folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder (metrics.json, metrics.csv, roc.png, panels)."),
    eval_mpp: float = typer.Option(_DEFAULTS.mpp, "--eval-mpp", help="Resolution of the evaluation grid in µm/px."),
    within: str = typer.Option(
        _DEFAULTS.within,
        "--within",
        metavar="|".join(get_args(Within)),
        help="Count pixels within tissue or the slide.",
    ),
    tissue_mpp: float = typer.Option(
        _DEFAULTS.tissue_mpp, "--tissue-mpp", help="Tissue-mask resolution in µm/px (--within tissue)."
    ),
    panel: list[str] | None = typer.Option(
        _DEFAULTS.panels,
        "--panel",
        metavar="STEM",
        help="Slide stem for a qualitative panel (repeatable; default: the first).",
    ),
    bins: int = typer.Option(_DEFAULTS.bins, "--bins", help="Histogram bins of the ROC."),
    slides: list[str] | None = typer.Option(
        _DEFAULTS.slides,
        "--slides",
        metavar="FILE|LIST|STEMS",
        help="Evaluate only these slides: a list file (one stem a line), a packaged list "
        "(camelyon16_test: the 128 test slides) or comma-separated stems; repeatable.",
    ),
    missing_truth: str = typer.Option(
        _DEFAULTS.missing_truth,
        "--missing-truth",
        metavar="|".join(get_args(MissingTruth)),
        help="Predicted slides without truth file: skip them, or count them as tumour-free.",
    ),
    froc: bool = typer.Option(
        False, "--froc", help="Also lesion-level FROC (CAMELYON16's rules) and slide-level ROC AUC."
    ),
    froc_mpp: float = typer.Option(_LESIONS.mpp, "--froc-mpp", help="Evaluation-mask resolution in µm/px (--froc)."),
    detection: str = typer.Option(
        _LESIONS.detection,
        "--detection",
        metavar="|".join(get_args(DetectionRule)),
        help="Detections: non-maximum suppression (NCRF) or connected components of the thresholded map.",
    ),
    detection_mpp: float = typer.Option(
        _LESIONS.detection_mpp, "--detection-mpp", help="Resolution the map is read at for detections, in µm/px."
    ),
    detection_threshold: float = typer.Option(
        _LESIONS.threshold, "--detection-threshold", help="Detections are pixels with probability above this."
    ),
    nms_radius_um: float = typer.Option(
        _LESIONS.nms_radius_um, "--nms-radius-um", help="Half side of the NMS square in µm."
    ),
    slide_score: str = typer.Option(
        _LESIONS.slide_score,
        "--slide-score",
        metavar="|".join(get_args(SlideScoreRule)),
        help=f"Slide score: the map's maximum, or the area (mm²) with probability >= {_LESIONS.area_threshold:g}.",
    ),
) -> None:
    """Pixel-level ROC/AUC, Dice, IoU, precision, recall, accuracy (at 0.5 and the best-Dice threshold).

    Multi-class predictions also get per-class one-vs-rest scores, a confusion matrix and macro averages.
    --froc adds CAMELYON16's lesion-level FROC and the slide-level ROC AUC (froc.csv, slides.csv,
    froc.png, slide_roc.png). Slides lacking truth or a prediction are named and skipped.
    """
    from mrseg.evaluation.evaluate import evaluate

    lesions = LesionSettings(
        mpp=froc_mpp,
        detection=detection,  # type: ignore[arg-type]  # checked by LesionSettings (ConfigError)
        detection_mpp=detection_mpp,
        threshold=detection_threshold,
        nms_radius_um=nms_radius_um,
        slide_score=slide_score,  # type: ignore[arg-type]
    )
    settings = EvaluateSettings(
        mpp=eval_mpp,
        within=within,  # type: ignore[arg-type]  # checked by EvaluateSettings (ConfigError)
        bins=bins,
        tissue_mpp=tissue_mpp,
        panels=tuple(panel) if panel else None,
        slides=resolve_slides(slides) if slides else None,
        missing_truth=missing_truth,  # type: ignore[arg-type]
        lesions=lesions if froc else None,
    )
    result = evaluate(_named_folders(pred), truth, out, settings)
    for name, model in result["models"].items():
        _log_model(name, model)
    log.info("report written to %s", out)


def _named_folders(pred: list[str]) -> dict[str, str]:
    """``{model name: folder}`` of the ``--pred`` values (``NAME=DIR``, or ``DIR`` named after its folder)."""
    folders: dict[str, str] = {}
    for item in pred:
        name, sep, folder = item.partition("=")
        if not sep:
            name, folder = Path(item).name or item, item
        if name in folders:
            raise ConfigError(f"--pred: model name {name!r} given twice")
        folders[name] = folder
    return folders


def _log_model(name: str, model: dict[str, Any]) -> None:
    """One log line of a model's pooled scores; multi-class adds its macro AUC and Dice."""
    pooled = model["pooled"]
    log.info(
        "%s: AUC %s, Dice@0.5 %s, best Dice %s at %.3f",
        name,
        _score(pooled["auc"]),
        _score(pooled["at"]["0.5"]["dice"]),
        _score(pooled["best_dice"]["dice"]),
        pooled["best_dice"]["threshold"],
    )
    if "lesions" in model:
        lesions = model["lesions"]
        log.info(
            "%s: lesion FROC %s (%d lesions, %d slides), slide-level AUC %s",
            name,
            _score(lesions["froc"]["score"]),
            lesions["froc"]["n_lesions"],
            lesions["froc"]["n_slides"],
            _score(lesions["slide"]["auc"]),
        )
    if "multiclass" in model:
        macro = model["multiclass"]["pooled"]["macro"]
        log.info(
            "%s: macro AUC %s, macro Dice %s (over the foreground classes)",
            name,
            _score(macro["auc"]),
            _score(macro["dice"]),
        )


def _score(value: float | None) -> str:
    """A score with four decimals, ``n/a`` when undefined (no pixel of that kind)."""
    return "n/a" if value is None else f"{value:.4f}"
