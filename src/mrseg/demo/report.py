"""The demo report: metrics table, ROC curves (val and test), training curves, panels, stage times.

:func:`write_report` turns the results dictionary of :func:`mrseg.demo.run_demo` into
``results.json`` (machine-readable, every number), ``report.md`` (Markdown + relative PNGs) and
``report.html`` (self-contained: the PNGs are embedded as base64 data URIs). Figures it draws:
``roc.png`` (the paper's Fig. 3, validation and test side by side, from the pooled histograms of
``eval/<split>/metrics.json``) and ``training_curves.png`` (training and validation loss per epoch
of every model, best epoch marked). The Fig. 4 panel and the mimic close-up come from the
evaluation and mimic stages and are only linked/embedded here.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from mrseg.core.atomic import atomic_write_text
from mrseg.core.figures import pyplot, save_figure
from mrseg.core.histogram import BinaryHistogram
from mrseg.demo.results import LESION_HEADERS, lesion_rows
from mrseg.demo.viewer import view_command
from mrseg.evaluation.settings import LesionSettings
from mrseg.training.runlog import read_metrics

log = logging.getLogger(__name__)

#: Columns of the metrics table: (results key, header, format).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("auc", "AUC"),
    ("dice", "Dice@0.5"),
    ("iou", "IoU@0.5"),
    ("best_dice", "best Dice"),
    ("best_dice_threshold", "best-Dice threshold"),
)


def _f(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):.{digits}f}"


def metrics_rows(results: Mapping[str, Any]) -> list[list[str]]:
    """One row per model: label, then for val and test each column of :data:`COLUMNS`, then the best epoch."""
    rows = []
    for entry in results["models"].values():
        row = [entry["label"]]
        for split in ("val", "test"):
            m = entry.get(split, {})
            row += [_f(m.get(k), 2 if k == "best_dice_threshold" else 4) for k, _ in COLUMNS]
        row.append(str(entry["train"].get("best_epoch", "")))
        rows.append(row)
    return rows


def table_headers() -> list[str]:
    return ["model"] + [f"{s} {h}" for s in ("val", "test") for _, h in COLUMNS] + ["best epoch"]


def mimic_rows(results: Mapping[str, Any]) -> list[list[str]]:
    """Per model: mean probability and share of pixels >= 0.5 in tumour nests and in mimics (test slides).

    Rounded to two decimals; higher is better in nests, lower is better in mimics (:data:`MIMIC_HEADERS`).
    """
    rows = []
    for entry in results["models"].values():
        m = entry.get("mimic", {})
        rows.append(
            [
                entry["label"],
                _f(m.get("tumour_mean"), 2),
                _f(m.get("tumour_positive"), 2),
                _f(m.get("mimic_mean"), 2),
                _f(m.get("mimic_positive"), 2),
            ]
        )
    return rows


MIMIC_HEADERS = [
    "model",
    "nests: mean p (higher is better)",
    "nests: share of px with p >= 0.5 (higher is better)",
    "mimics: mean p (lower is better)",
    "mimics: share of px with p >= 0.5 (lower is better)",
]
#: What the mimic table shows, above it in the report.
MIMIC_NOTE = (
    "Tumour nests (label 1) and tumour mimics (label 0: look like tumour at high resolution, context says "
    "otherwise) on the test slides; p = the model's tumour probability. A model that uses context keeps nests "
    "high and mimics low."
)
STAGE_HEADERS = ["stage", "wall s", "CPU s", "status"]


def stage_rows(results: Mapping[str, Any]) -> list[list[str]]:
    """Stage, wall seconds, CPU seconds, reused from an earlier run or not."""
    rows = []
    for s in results["stages"]:
        rows.append([s["name"], f"{s['seconds']:.1f}", f"{s['cpu_seconds']:.1f}", "reused" if s["reused"] else "ran"])
    return rows


def stage_totals(results: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """Wall and CPU seconds summed by stage kind (``data``, ``train``, ``predict``, ``evaluate``, ``mimic``)."""
    totals: dict[str, tuple[float, float]] = {}
    for s in results["stages"]:
        kind = s["name"].split("_", 1)[0]
        w, c = totals.get(kind, (0.0, 0.0))
        totals[kind] = (w + s["seconds"], c + s["cpu_seconds"])
    return totals


def plot_rocs(root: str | os.PathLike[str], results: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Validation and test ROC curves of every model side by side (pooled pixels), AUCs in the legends.

    The false-positive axis is logarithmic (from 1e-4, or one negative pixel when there are fewer),
    so curves that crowd the top-left corner on a linear axis can be told apart.
    """
    root = Path(root)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 5), dpi=110)
    for ax, split in zip(axes, ("val", "test"), strict=True):
        data = json.loads((root / "eval" / split / "metrics.json").read_text())
        low = 1e-4
        for entry in results["models"].values():
            pooled = data["models"][entry["label"]]["pooled"]
            hist = BinaryHistogram.from_dict(pooled["histogram"])
            fpr, tpr, _ = hist.roc()
            low = max(low, 1.0 / max(hist.n_neg, 1))
            ax.plot(fpr, tpr, lw=1.6, label=f"{entry['label']} ({_f(pooled['auc'])})")
        chance = np.logspace(-6, 0, 61)
        ax.plot(chance, chance, color="0.6", lw=0.8, ls="--")
        name = "validation" if split == "val" else "held-out test"
        ax.set_xscale("log")
        ax.set(xlim=(low, 1), ylim=(0, 1.01), xlabel="False positive rate (log scale)", ylabel="True positive rate")
        ax.set_title(f"{name} slides")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8, title="model (AUC)")
    fig.suptitle(f"Pixel-level ROC at {results['eval']['mpp']:g} µm/px within tissue")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_training_curves(
    root: str | os.PathLike[str], results: Mapping[str, Any], path: str | os.PathLike[str]
) -> Path:
    """Training and validation loss (data loss, without L2) per epoch for every model; best epochs marked."""
    root = Path(root)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110, sharey=True)
    for key, entry in results["models"].items():
        rows = read_metrics(root / "runs" / key / "metrics.csv")
        if not rows:
            continue
        epochs = [r.epoch for r in rows]
        (line,) = axes[0].plot(epochs, [r.train_loss for r in rows], marker="o", ms=3, label=entry["label"])
        axes[1].plot(epochs, [r.val_loss for r in rows], marker="o", ms=3, color=line.get_color(), label=entry["label"])
        best = entry["train"].get("best_epoch")
        if best is not None:
            val = {r.epoch: r.val_loss for r in rows}.get(best)
            if val is not None:
                axes[1].plot([best], [val], marker="*", ms=12, color=line.get_color())
    axes[0].set(title="training loss (BCE)", xlabel="epoch", ylabel="loss")
    axes[1].set(title="validation loss (BCE; * = selected epoch)", xlabel="epoch")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figures(root: Path, results: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(relative path, caption) of every figure of the report that exists."""
    panel = results.get("panel_slide")
    figures = [
        (
            "roc.png",
            "Pixel-level ROC curves on the validation and the held-out test slides (paper Fig. 3); "
            "false-positive rate on a log scale.",
        ),
        (
            f"eval/test/panel_{panel}.png",
            f"Test slide {panel}: H&E, ground truth and each model's probability map (paper Fig. 4; "
            "red outline: ground truth; viridis colour scale, 0 to 1).",
        ),
        (
            "mimic/mimic_crop.png",
            "A tumour mimic (label 0) on a test slide with its surroundings, and every model's map of the same field.",
        ),
        ("training_curves.png", "Training and validation loss per epoch; the starred epoch is the selected model."),
    ]
    return [(rel, cap) for rel, cap in figures if (root / rel).is_file()]


def versus_best_unet(models: list[Mapping[str, Any]], mrn: Mapping[str, Any], metric: str) -> tuple[float, str]:
    """(MRN minus the best U-Net, that U-Net's label) on the test slides by ``metric``; NaN when undefined."""
    unets = [(e["label"], float(e.get("test", {}).get(metric, math.nan))) for e in models]
    unets = [(n, v) for n, v in unets if n.startswith("U-Net") and v == v]
    if not unets:
        return math.nan, ""
    rival, best = max(unets, key=lambda t: t[1])
    return float(mrn.get("test", {}).get(metric, math.nan)) - best, rival


def headline(results: Mapping[str, Any]) -> str:
    """Who won on the held-out test slides and by how much: each MRN against the best U-Net, AUC and Dice."""
    models = list(results["models"].values())
    parts = []
    for mrn in (e for e in models if e["label"].startswith("MRN")):
        diffs = {name: versus_best_unet(models, mrn, m) for m, name in (("auc", "AUC"), ("dice", "Dice@0.5"))}
        if any(d != d for d, _ in diffs.values()):
            parts.append(f"{mrn['label']}: undefined (no tumour or no normal pixel on the test slides)")
            continue
        won = all(d > 0 for d, _ in diffs.values())
        verdict = "beats every U-Net on AUC and Dice" if won else "does not beat every U-Net on both"
        detail = "; ".join(f"{name} {d:+.4f} vs {rival}" for name, (d, rival) in diffs.items())
        parts.append(f"{mrn['label']} {verdict} ({detail})")
    if not parts:
        return "No MRN in this run."
    return (
        f"Test slides, seed {results.get('seed')}: " + ". ".join(parts) + ". One seed only: "
        "python -m mrseg.report DIR [DIR ...] compares several."
    )


def _summary_text(results: Mapping[str, Any]) -> str:
    models = list(results["models"].values())
    test = [(e["label"], e.get("test", {}).get("auc", math.nan)) for e in models]
    test = [(n, a) for n, a in test if a == a]
    if not test:
        return "No test AUC could be computed (no tumour pixel or no normal pixel on the test slides)."
    best = max(test, key=lambda t: t[1])
    return f"Best test AUC: {best[0]} ({best[1]:.4f}). {headline(results)}"


def _settings_text(results: Mapping[str, Any]) -> list[str]:
    s = results["settings"]
    splits = ", ".join(f"{k}: {v['n_slides']} slides of {v['size_px']} px" for k, v in s["splits"].items())
    train = ", ".join(f"{k}={v}" for k, v in s["train"].items())
    m = results["machine"]
    return [
        f"preset {results['preset']}, seed {results['seed']}, device {results['device']}, "
        f"mrseg {results['mrseg_version']}",
        f"synthetic slides at {s['slide_mpp']} µm/px: {splits} (test never used for training or model selection)",
        f"shared recipe: configs/synthetic_*.yaml with {train}; best epoch by lowest validation loss",
        f"prediction overlap {s['overlap']}; evaluation at {results['eval']['mpp']} µm/px within tissue, "
        "positive = label > 0",
        f"machine: {m['platform']}, {m['cpus']} CPUs, torch {m['torch']} ({m['torch_threads']} threads), "
        f"load average at the end {m['load_average']}",
        f"total wall time {results.get('total_seconds', 0.0):.0f} s",
    ]


def _lesions(results: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    return LESION_HEADERS, lesion_rows(dict(results))


#: What the lesion table counts (CAMELYON16's rules, ``docs/evaluation.md``).
LESION_NOTE = (
    f"Lesions: tumour regions grown by {LesionSettings().distance_um:g} µm whose major axis reaches "
    f"{LesionSettings().itc_um:g} µm; smaller ones are isolated tumour cells (ITCs), neither hits nor false "
    "positives. n/a: the test slides hold no lesion."
)


def render_markdown(root: str | os.PathLike[str], results: Mapping[str, Any]) -> str:
    """The Markdown report (figures as relative links)."""
    root = Path(root)
    lines = ["# mrseg demo: single-resolution U-Nets versus MRNs on synthetic slides", ""]
    lines += [_summary_text(results), ""]
    lines += [f"- {t}" for t in _settings_text(results)]
    lines += ["", "## Metrics (pooled pixels)", "", _md_table(table_headers(), metrics_rows(results)), ""]
    lines += [
        "## Tumour mimics on the test slides",
        "",
        MIMIC_NOTE,
        "",
        _md_table(MIMIC_HEADERS, mimic_rows(results)),
        "",
    ]
    lines += ["## Lesion-level FROC on the test slides (CAMELYON16 rules)", "", _md_table(*_lesions(results)), ""]
    lines += [LESION_NOTE, ""]
    for rel, caption in _figures(root, results):
        lines += [f"![{caption}]({rel})", "", f"*{caption}*", ""]
    lines += ["## Time per stage", "", _md_table(STAGE_HEADERS, stage_rows(results)), ""]
    return "\n".join(lines)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #ccc;padding:3px 8px;"
    "text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}"
    "img{max-width:100%}figure{margin:1.5em 0}figcaption{font-style:italic;color:#555}"
)


def render_html(root: str | os.PathLike[str], results: Mapping[str, Any]) -> str:
    """The self-contained HTML report (figures embedded as base64 PNG data URIs)."""
    root = Path(root)
    view = view_command(root, results["models"])
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>mrseg demo report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>mrseg demo: single-resolution U-Nets versus MRNs on synthetic slides</h1>",
        f"<p>{html.escape(_summary_text(results))}</p>",
        f"<p>To see the test slides with every model and the ground truth: <code>{html.escape(view)}</code></p><ul>",
        *(f"<li>{html.escape(t)}</li>" for t in _settings_text(results)),
        "</ul><h2>Metrics (pooled pixels)</h2>",
        _html_table(table_headers(), metrics_rows(results)),
        "<h2>Tumour mimics on the test slides</h2>",
        f"<p>{html.escape(MIMIC_NOTE)}</p>",
        _html_table(MIMIC_HEADERS, mimic_rows(results)),
        "<h2>Lesion-level FROC on the test slides (CAMELYON16 rules)</h2>",
        _html_table(*_lesions(results)),
        f"<p>{html.escape(LESION_NOTE)}</p>",
    ]
    for rel, caption in _figures(root, results):
        data = base64.b64encode((root / rel).read_bytes()).decode("ascii")
        parts.append(
            f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(caption)}'>"
            f"<figcaption>{html.escape(caption)} (<a href='{html.escape(rel)}'>{html.escape(rel)}</a>)</figcaption>"
            "</figure>"
        )
    parts += ["<h2>Time per stage</h2>", _html_table(STAGE_HEADERS, stage_rows(results))]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(root: str | os.PathLike[str], results: Mapping[str, Any]) -> tuple[Path, Path]:
    """Draw ``roc.png`` and ``training_curves.png``, then write ``results.json``, ``report.md`` and ``report.html``.

    Returns
    -------
    tuple of Path
        ``(report.html, report.md)``.
    """
    root = Path(root)
    plot_rocs(root, results, root / "roc.png")
    plot_training_curves(root, results, root / "training_curves.png")
    atomic_write_text(root / "results.json", json.dumps(results, indent=2, default=str))
    md = atomic_write_text(root / "report.md", render_markdown(root, results))
    page = atomic_write_text(root / "report.html", render_html(root, results))
    return page, md


def rich_table(results: Mapping[str, Any]) -> Any:
    """The compact metrics table (AUC, Dice and IoU at 0.5 per split) as a :class:`rich.table.Table`."""
    table = Table(title="mrseg demo: pixel-level metrics (pooled)")
    table.add_column("model", no_wrap=True, min_width=14)
    for split in ("val", "test"):
        for _, header in COLUMNS[:3]:
            table.add_column(f"{split} {header.replace('@0.5', '')}", justify="right")
    table.add_column("epoch", justify="right")
    for entry in results["models"].values():
        cells = [_f(entry.get(split, {}).get(k)) for split in ("val", "test") for k, _ in COLUMNS[:3]]
        table.add_row(entry["label"], *cells, str(entry["train"].get("best_epoch", "")))
    return table
