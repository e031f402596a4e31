"""Figures of an evaluation: ROC overlay of several models (the paper's Fig. 3), per-slide panels (Fig. 4),
for multi-class tasks per-class ROC curves and confusion matrices, and the lesion-level FROC."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mrseg.core.figures import pyplot, save_figure


def plot_roc(
    path: str | os.PathLike[str],
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]],
    *,
    title: str = "Pixel-level ROC",
) -> Path:
    """Overlay ROC curves ``{name: (fpr, tpr, auc)}`` in one figure, AUCs in the legend; write a PNG atomically."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, lw=1.8, label=f"{name} (AUC = {auc:.4f})")
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate", ylabel="True positive rate", title=title)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_froc(
    path: str | os.PathLike[str],
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]],
    fp_rates: Sequence[float],
    *,
    title: str = "Lesion-level FROC",
) -> Path:
    """Overlay FROC curves ``{name: (fp_per_slide, sensitivity, score)}`` (log x), the FP rates marked; write a PNG.

    The curves are drawn up to twice the largest FP rate (the last point extended flat, as the
    sensitivity is read); the legend gives each model's score (mean sensitivity at ``fp_rates``).
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.4), dpi=120)
    low, high = min(fp_rates) / 2, max(fp_rates) * 2
    for name, (fps, sens, score) in curves.items():
        x = np.concatenate([np.asarray(fps, dtype=np.float64), [max(high, float(np.max(fps, initial=0.0)))]])
        y = np.concatenate([np.asarray(sens, dtype=np.float64), [float(sens[-1]) if len(sens) else 0.0]])
        ax.plot(np.maximum(x, low), y, lw=1.6, label=f"{name} (FROC = {score:.4f})")
    for rate in fp_rates:
        ax.axvline(rate, color="0.85", lw=0.8, zorder=0)
    ax.set_xscale("log")
    ax.set(xlim=(low, high), ylim=(0, 1.01), xlabel="Average false positives per slide", ylabel="Sensitivity")
    ax.set_xticks(list(fp_rates), [f"{r:g}" for r in fp_rates])
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


#: Columns of the panel grid: two cells of 5.8 inches at 100 dpi keep each map over 384 px wide in a
#: figure under 1100 px (shown at its natural size in a 1200 px page).
PANEL_COLUMNS = 2


def plot_panel(
    path: str | os.PathLike[str],
    thumbnail: np.ndarray,
    truth: np.ndarray,
    maps: Mapping[str, np.ndarray],
    *,
    title: str = "",
    cmap: str = "viridis",
    label_colors: Sequence[Sequence[int]] | None = None,
    columns: int = PANEL_COLUMNS,
) -> Path:
    """A grid: H&E thumbnail, ground truth, then each model's probability map (same grid); write a PNG.

    ``thumbnail`` is uint8 ``(h, w, 3)``; ``truth`` labels ``(h, w)`` (nonzero = positive, drawn white;
    with ``label_colors``, the RGB colour of each label, for multi-class truth); ``maps`` float
    probabilities ``(h, w)`` in [0, 1], drawn with the perceptually uniform ``cmap`` and one shared
    colour bar. The ground-truth outline (label > 0) is drawn on the H&E and on every map. Each cell
    is 5.8 inches wide at 100 dpi (each map over 384 px).
    """
    plt = pyplot()
    n = 2 + len(maps)
    cols = max(1, min(columns, n))
    rows = -(-n // cols)
    h, w = thumbnail.shape[:2]
    cell = 5.8
    fig, grid = plt.subplots(rows, cols, figsize=(cell * cols + 0.8, cell * h / max(w, 1) * rows + 0.6), dpi=100,
                             squeeze=False)  # fmt: skip
    axes = list(grid.ravel())
    positive = np.asarray(truth) > 0
    axes[0].imshow(thumbnail)
    axes[0].set_title("H&E (outline: ground truth)")
    if label_colors is None:
        axes[1].imshow(positive, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        palette = np.asarray(label_colors, dtype=np.uint8)
        axes[1].imshow(palette[np.clip(np.asarray(truth), 0, len(palette) - 1)], interpolation="nearest")
    axes[1].set_title("Ground truth")
    image = None
    for ax, (name, prob) in zip(axes[2:], maps.items(), strict=False):
        image = ax.imshow(prob, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name)
    for ax in (axes[0], *axes[2:n]):
        if positive.any() and min(positive.shape) > 1:
            ax.contour(positive, levels=[0.5], colors="#ff3030", linewidths=0.9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[n:]:
        ax.set_axis_off()
    if image is not None:
        fig.colorbar(image, ax=axes, fraction=0.02, pad=0.01, label="probability")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, tight=True)


def plot_class_rocs(
    path: str | os.PathLike[str],
    curves: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray, float]]],
    colors: Mapping[str, Sequence[int]],
    *,
    title: str = "One-vs-rest ROC per class",
) -> Path:
    """One panel per model, one ROC curve per class ``{model: {class: (fpr, tpr, auc)}}``; write a PNG.

    ``colors`` gives each class's RGB (0..255) colour (the label spec's).
    """
    plt = pyplot()
    n = max(1, len(curves))
    fig, axes = plt.subplots(1, n, figsize=(4.4 * n, 4.6), dpi=120, squeeze=False)
    for ax, (model, by_class) in zip(axes[0], curves.items(), strict=True):
        for name, (fpr, tpr, auc) in by_class.items():
            rgb = tuple(v / 255 for v in colors.get(name, (128, 128, 128)))
            ax.plot(fpr, tpr, lw=1.6, color=rgb, label=f"{name} ({auc:.4f})")
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
        ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate", ylabel="True positive rate", title=model)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=7, title="class (AUC)")
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_confusion(
    path: str | os.PathLike[str],
    matrices: Mapping[str, np.ndarray],
    classes: Sequence[str],
    *,
    title: str = "Confusion matrix",
) -> Path:
    """One heat map per model of ``counts[truth, predicted]``, each row as shares of its truth pixels; write a PNG.

    Cells show the share (and the pixel count); rows without truth pixels stay blank.
    """
    plt = pyplot()
    n = max(1, len(matrices))
    c = len(classes)
    side = 1.0 + 0.7 * c
    fig, axes = plt.subplots(1, n, figsize=(side * n + 1.6, side + 0.8), dpi=120, squeeze=False, sharey=True)
    image = None
    for ax, (model, counts) in zip(axes[0], matrices.items(), strict=True):
        counts = np.asarray(counts, dtype=np.float64)
        rows = counts.sum(axis=1, keepdims=True)
        shares = np.divide(counts, rows, out=np.full_like(counts, np.nan), where=rows > 0)
        image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for t in range(c):
            for p in range(c):
                if shares[t, p] == shares[t, p]:
                    ink = "white" if shares[t, p] > 0.6 else "black"
                    ax.text(p, t, f"{shares[t, p]:.2f}\n{int(counts[t, p])}", ha="center", va="center", fontsize=6,
                            color=ink)  # fmt: skip
        ax.set_xticks(range(c), classes, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(c), classes, fontsize=7)
        ax.set(xlabel="predicted", title=model)
    axes[0][0].set_ylabel("truth")
    if image is not None:
        fig.colorbar(image, ax=list(axes[0]), fraction=0.03, pad=0.02, label="share of truth pixels")
    fig.suptitle(title)
    return save_figure(fig, path, tight=True)
