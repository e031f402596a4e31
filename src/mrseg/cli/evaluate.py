"""``mrseg evaluate``: pixel-level metrics and figures (a thin layer over :func:`mrseg.evaluation.evaluate.evaluate`).

Every option's default is :class:`~mrseg.evaluation.settings.EvaluateSettings`'s.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, get_args

import typer

from mrseg.cli.app import command
from mrseg.core.errors import ConfigError
from mrseg.evaluation.settings import EvaluateSettings, Within

log = logging.getLogger("mrseg.cli")

#: The library's defaults, shown by every option below.
_DEFAULTS = EvaluateSettings()


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
) -> None:
    """Pixel-level ROC/AUC, Dice, IoU, precision, recall, accuracy (at 0.5 and the best-Dice threshold).

    Multi-class predictions also get per-class one-vs-rest scores, a confusion matrix and macro averages.
    """
    from mrseg.evaluation.evaluate import evaluate

    settings = EvaluateSettings(
        mpp=eval_mpp,
        within=within,  # type: ignore[arg-type]  # checked by EvaluateSettings (ConfigError)
        bins=bins,
        tissue_mpp=tissue_mpp,
        panels=tuple(panel) if panel else None,
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
