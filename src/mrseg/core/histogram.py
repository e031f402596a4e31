"""Pixel-count histograms of predicted probability (positives, negatives): ROC, AUC and threshold scores.

The torch-free home of :class:`BinaryHistogram`, shared by evaluation (whole-slide metrics,
:mod:`mrseg.evaluation.metrics`) and training (the validation pixel AUC of every epoch). With 1024
bins the AUC equals :func:`sklearn.metrics.roc_auc_score` on the same pixels up to the effect of
values that share a bin. A pixel is predicted positive at threshold ``t`` when ``probability >= t``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mrseg.core.encoding import ProbabilityEncoding

DEFAULT_BINS = 1024


@dataclass
class BinaryHistogram:
    """Histograms of predicted probability for positive and negative pixels.

    Attributes
    ----------
    bins
        Number of equal-width bins over [0, 1]; bin ``k`` holds ``k / bins <= p < (k + 1) / bins``
        (``p == 1`` falls in the last bin).
    pos, neg
        ``int64 (bins,)`` pixel counts.
    """

    bins: int = DEFAULT_BINS
    pos: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    neg: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        if self.bins < 2:
            raise ValueError(f"bins must be >= 2, got {self.bins}")
        if self.pos.size == 0:
            self.pos = np.zeros(self.bins, np.int64)
        if self.neg.size == 0:
            self.neg = np.zeros(self.bins, np.int64)

    def bin_index(self, prob: np.ndarray) -> np.ndarray:
        """Bin of each probability (values outside [0, 1] are clipped)."""
        idx = np.floor(np.asarray(prob, dtype=np.float64) * self.bins).astype(np.int64)
        return np.clip(idx, 0, self.bins - 1)

    def update(self, prob: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add pixels: ``prob`` float in [0, 1], ``truth`` bool/int (nonzero = positive), optional ``valid`` mask."""
        prob = np.asarray(prob).ravel()
        truth = np.asarray(truth).ravel() != 0
        if prob.shape != truth.shape:
            raise ValueError(f"prob and truth differ in size: {prob.shape} vs {truth.shape}")
        if valid is not None:
            keep = np.asarray(valid).ravel().astype(bool)
            prob, truth = prob[keep], truth[keep]
        idx = self.bin_index(prob)
        self.pos += np.bincount(idx[truth], minlength=self.bins)
        self.neg += np.bincount(idx[~truth], minlength=self.bins)

    def update_uint8(self, values: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Faster :meth:`update` for maps stored as ``uint8`` (probability x 255)."""
        values = np.asarray(values).ravel()
        truth = np.asarray(truth).ravel() != 0
        if valid is not None:
            keep = np.asarray(valid).ravel().astype(bool)
            values, truth = values[keep], truth[keep]
        lut = self.bin_index(np.arange(256) / 255.0)
        pos = np.bincount(values[truth], minlength=256)
        neg = np.bincount(values[~truth], minlength=256)
        np.add.at(self.pos, lut, pos)
        np.add.at(self.neg, lut, neg)

    def update_encoded(
        self,
        values: np.ndarray,
        encoding: ProbabilityEncoding,
        truth: np.ndarray,
        valid: np.ndarray | None = None,
    ) -> None:
        """Add pixels given as stored map values (:meth:`update_uint8` for uint8 maps, else decoded)."""
        if encoding.dtype == "uint8":
            self.update_uint8(values, truth, valid)
        else:
            self.update(encoding.decode(values), truth, valid)

    def __iadd__(self, other: BinaryHistogram) -> BinaryHistogram:
        if other.bins != self.bins:
            raise ValueError("cannot add histograms with different bin counts")
        self.pos += other.pos
        self.neg += other.neg
        return self

    @property
    def n_pos(self) -> int:
        return int(self.pos.sum())

    @property
    def n_neg(self) -> int:
        return int(self.neg.sum())

    def thresholds(self) -> np.ndarray:
        """Bin edges ``k / bins`` for ``k = 0 .. bins`` (threshold ``t``: positive when ``p >= t``)."""
        return np.arange(self.bins + 1) / self.bins

    def confusion(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``tp, fp, fn, tn`` (``int64 (bins + 1,)``) at each threshold of :meth:`thresholds`."""
        # Pixels with p >= k / bins are those in bins k.. bins-1.
        tp = np.concatenate([np.cumsum(self.pos[::-1])[::-1], [0]])
        fp = np.concatenate([np.cumsum(self.neg[::-1])[::-1], [0]])
        fn = self.n_pos - tp
        tn = self.n_neg - fp
        return tp, fp, fn, tn

    def roc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``fpr, tpr, thresholds`` from the highest threshold (0, 0) to the lowest (1, 1)."""
        tp, fp, _, _ = self.confusion()
        tpr = tp / max(self.n_pos, 1)
        fpr = fp / max(self.n_neg, 1)
        return fpr[::-1], tpr[::-1], self.thresholds()[::-1]

    def auc(self) -> float:
        """Area under the ROC curve (trapezoids; ties within a bin count half); NaN if one class is absent."""
        if self.n_pos == 0 or self.n_neg == 0:
            return float("nan")
        fpr, tpr, _ = self.roc()
        return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))

    def at_threshold(self, threshold: float) -> dict[str, float]:
        """Dice, IoU, precision, recall, specificity, accuracy at ``threshold`` (rounded to a bin edge)."""
        k = int(np.clip(round(threshold * self.bins), 0, self.bins))
        tp, fp, fn, tn = (int(a[k]) for a in self.confusion())
        return binary_scores(tp, fp, fn, tn) | {"threshold": k / self.bins}

    def best_dice_threshold(self) -> float:
        """The bin-edge threshold with the highest Dice (the lowest such threshold on ties)."""
        tp, fp, fn, _ = self.confusion()
        denom = 2 * tp + fp + fn
        dice = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
        return float(self.thresholds()[int(np.argmax(dice))])

    def summary(self, thresholds: tuple[float, ...] = (0.5,)) -> dict[str, Any]:
        """All metrics as a JSON-ready dict: AUC, counts, and scores at each threshold and at the best-Dice one."""
        out: dict[str, Any] = {"auc": self.auc(), "n_positive": self.n_pos, "n_negative": self.n_neg}
        out["at"] = {f"{t:g}": self.at_threshold(t) for t in thresholds}
        best = self.best_dice_threshold()
        out["best_dice"] = self.at_threshold(best)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"bins": self.bins, "pos": self.pos.tolist(), "neg": self.neg.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BinaryHistogram:
        return cls(bins=int(d["bins"]), pos=np.asarray(d["pos"], np.int64), neg=np.asarray(d["neg"], np.int64))


def safe_ratio(num: float, den: float) -> float:
    """``num / den``, NaN when ``den`` is 0."""
    return float(num / den) if den > 0 else float("nan")


def binary_scores(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """Dice, IoU, precision, recall, specificity and accuracy of confusion counts (plus the counts)."""
    return {
        "dice": safe_ratio(2 * tp, 2 * tp + fp + fn),
        "iou": safe_ratio(tp, tp + fp + fn),
        "precision": safe_ratio(tp, tp + fp),
        "recall": safe_ratio(tp, tp + fn),
        "specificity": safe_ratio(tn, tn + fp),
        "accuracy": safe_ratio(tp + tn, tp + fp + fn + tn),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


__all__ = ["DEFAULT_BINS", "BinaryHistogram", "binary_scores", "safe_ratio"]
