"""Figures of an evaluation: ROC overlay of several models (the paper's Fig. 3) and per-slide panels (Fig. 4)."""

from __future__ import annotations

import os
from collections.abc import Mapping
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


def plot_panel(
    path: str | os.PathLike[str],
    thumbnail: np.ndarray,
    truth: np.ndarray,
    maps: Mapping[str, np.ndarray],
    *,
    title: str = "",
    cmap: str = "jet",
) -> Path:
    """One row: H&E thumbnail, ground truth, then each model's probability map (same grid); write a PNG.

    ``thumbnail`` is uint8 ``(h, w, 3)``; ``truth`` labels ``(h, w)`` (nonzero = positive);
    ``maps`` float probabilities ``(h, w)`` in [0, 1].
    """
    plt = pyplot()
    n = 2 + len(maps)
    h, w = thumbnail.shape[:2]
    width = 3.2 * n
    fig, axes = plt.subplots(1, n, figsize=(width, 3.2 * h / max(w, 1) + 0.6), dpi=120, squeeze=False)
    axes = axes[0]
    axes[0].imshow(thumbnail)
    axes[0].set_title("H&E")
    axes[1].imshow(np.asarray(truth) > 0, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_title("Ground truth")
    image = None
    for ax, (name, prob) in zip(axes[2:], maps.items(), strict=True):
        image = ax.imshow(prob, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if image is not None:
        fig.colorbar(image, ax=list(axes), fraction=0.02, pad=0.01, label="probability")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, tight=True)
