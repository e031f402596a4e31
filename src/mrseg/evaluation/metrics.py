"""Streaming pixel-level metrics: histogram ROC/AUC, threshold metrics (Dice, IoU, ...), confusion matrices.

Probabilities of all pixels of all slides never sit in memory at once: each chunk of pixels is
added to two histograms (positives, negatives) of ``bins`` equal-width bins over [0, 1]. The ROC
curve, its AUC and every threshold metric (at any bin edge) follow from the cumulative counts.

With 1024 bins the AUC equals :func:`sklearn.metrics.roc_auc_score` on the same pixels up to the
effect of values that share a bin (exactly for maps stored as uint8 / 255, whose 256 levels fall
in distinct bins). A pixel is predicted positive at threshold ``t`` when ``probability >= t``.

Multi-class tasks add a :class:`ConfusionMatrix` (truth label x predicted label counts, from which
per-class Dice, IoU, precision and recall follow) and :class:`ClassMetrics`, which pairs it with one
one-vs-rest :class:`BinaryHistogram` per class (per-class ROC/AUC) and gives macro averages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mrseg.core.encoding import ProbabilityEncoding
from mrseg.core.histogram import DEFAULT_BINS, BinaryHistogram, binary_scores, safe_ratio


def mask_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice, IoU, precision, recall, specificity, accuracy of two binary masks (nonzero = positive).

    Ratios with a zero denominator are NaN (e.g. Dice of two empty masks).
    """
    p = np.asarray(pred).astype(bool).ravel()
    t = np.asarray(truth).astype(bool).ravel()
    if p.shape != t.shape:
        raise ValueError(f"masks differ in size: {p.shape} vs {t.shape}")
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    tn = int(p.size - tp - fp - fn)
    return binary_scores(tp, fp, fn, tn)


@dataclass
class ConfusionMatrix:
    """Pixel counts of truth label (rows) against predicted label (columns), ``int64 (C, C)``.

    Attributes
    ----------
    num_classes
        ``C``: labels ``0 .. C-1`` (0 = background).
    counts
        ``counts[t, p]``: pixels of truth label ``t`` predicted as ``p``.
    """

    num_classes: int
    counts: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ValueError(f"a confusion matrix needs at least two classes, got {self.num_classes}")
        if self.counts.size == 0:
            self.counts = np.zeros((self.num_classes, self.num_classes), np.int64)
        if self.counts.shape != (self.num_classes, self.num_classes):
            raise ValueError(f"counts of shape {self.counts.shape} for {self.num_classes} classes")

    def update(self, truth: np.ndarray, pred: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add pixels: integer ``truth`` and ``pred`` labels of the same shape, optional ``valid`` mask.

        Raises ``ValueError`` for a label outside ``0 .. C-1``.
        """
        t = np.asarray(truth).ravel().astype(np.int64)
        p = np.asarray(pred).ravel().astype(np.int64)
        if t.shape != p.shape:
            raise ValueError(f"truth and prediction differ in size: {t.shape} vs {p.shape}")
        if valid is not None:
            keep = np.asarray(valid).ravel().astype(bool)
            t, p = t[keep], p[keep]
        c = self.num_classes
        for name, labels in (("truth", t), ("predicted", p)):
            if labels.size and (labels.min() < 0 or labels.max() >= c):
                raise ValueError(f"{name} label {int(labels.max())} outside 0..{c - 1}")
        self.counts += np.bincount(t * c + p, minlength=c * c).reshape(c, c)

    def __iadd__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        if other.num_classes != self.num_classes:
            raise ValueError("cannot add confusion matrices of different sizes")
        self.counts += other.counts
        return self

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def one_vs_rest(self, label: int) -> tuple[int, int, int, int]:
        """``tp, fp, fn, tn`` of ``label`` against every other label."""
        tp = int(self.counts[label, label])
        fp = int(self.counts[:, label].sum()) - tp
        fn = int(self.counts[label, :].sum()) - tp
        return tp, fp, fn, self.total - tp - fp - fn

    def scores(self, label: int) -> dict[str, float]:
        """Dice, IoU, precision, recall, specificity, accuracy (and tp/fp/fn/tn) of ``label`` one-vs-rest."""
        return binary_scores(*self.one_vs_rest(label))

    def accuracy(self) -> float:
        """Share of pixels whose predicted label is the truth label (NaN without pixels)."""
        return safe_ratio(float(np.trace(self.counts)), float(self.total))


#: Metrics averaged over the foreground classes in :meth:`ClassMetrics.summary` (``macro``).
MACRO_METRICS: tuple[str, ...] = ("auc", "dice", "iou", "precision", "recall")


def _mean_defined(values: Sequence[float]) -> float:
    defined = [v for v in values if v == v]
    return float(sum(defined) / len(defined)) if defined else float("nan")


class ClassMetrics:
    """Multi-class metrics of one prediction: one-vs-rest histograms per class and the confusion matrix.

    Parameters
    ----------
    classes
        Class names by label (``classes[0]`` is the background).
    bins
        Bins of each histogram.

    Attributes
    ----------
    histograms
        One :class:`BinaryHistogram` per class: that class's probability, positives = pixels of that
        truth label (one-vs-rest ROC/AUC).
    confusion
        Truth label x predicted label (the predicted label is the most probable class).
    """

    def __init__(self, classes: Sequence[str], bins: int = DEFAULT_BINS) -> None:
        self.classes = tuple(classes)
        self.histograms = [BinaryHistogram(bins) for _ in self.classes]
        self.confusion = ConfusionMatrix(len(self.classes))

    def update(
        self,
        stored: Sequence[tuple[np.ndarray, ProbabilityEncoding]],
        truth: np.ndarray,
        predicted: np.ndarray,
        valid: np.ndarray | None = None,
    ) -> None:
        """Add pixels: each class's stored probability (label order), truth and predicted labels, ``valid``."""
        if len(stored) != len(self.classes):
            raise ValueError(f"{len(stored)} probability maps for {len(self.classes)} classes")
        truth = np.asarray(truth)
        for label, (values, encoding) in enumerate(stored):
            self.histograms[label].update_encoded(values, encoding, truth == label, valid)
        self.confusion.update(truth, predicted, valid)

    def __iadd__(self, other: ClassMetrics) -> ClassMetrics:
        if other.classes != self.classes:
            raise ValueError("cannot add metrics of different classes")
        for mine, theirs in zip(self.histograms, other.histograms, strict=True):
            mine += theirs
        self.confusion += other.confusion
        return self

    def per_class(self) -> dict[str, dict[str, Any]]:
        """``{class name: {label, auc, dice, iou, precision, recall, specificity, accuracy, tp, fp, fn, tn,
        n_truth, n_predicted}}``; Dice and the rest from the confusion matrix, AUC from the histograms."""
        out: dict[str, dict[str, Any]] = {}
        for label, name in enumerate(self.classes):
            tp, fp, fn, _ = self.confusion.one_vs_rest(label)
            out[name] = {"label": label, "auc": self.histograms[label].auc()} | self.confusion.scores(label)
            out[name] |= {"n_truth": tp + fn, "n_predicted": tp + fp}
        return out

    def summary(self) -> dict[str, Any]:
        """JSON-ready: per-class scores, macro averages over the foreground classes, accuracy, confusion.

        ``macro[m]`` is the unweighted mean of ``m`` over the classes ``1 .. C-1`` whose value is
        defined (NaN when none is).
        """
        per_class = self.per_class()
        foreground = [per_class[name] for name in self.classes[1:]]
        return {
            "classes": per_class,
            "macro": {m: _mean_defined([c[m] for c in foreground]) for m in MACRO_METRICS},
            "accuracy": self.confusion.accuracy(),
            "confusion": self.confusion.counts.tolist(),
        }

    def roc_curves(self) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
        """``{class name: (fpr, tpr, auc)}`` of every class's one-vs-rest ROC."""
        return {name: (*h.roc()[:2], h.auc()) for name, h in zip(self.classes, self.histograms, strict=True)}

    def histograms_dict(self) -> dict[str, dict[str, Any]]:
        """``{class name: histogram dict}`` (to re-plot the per-class ROC curves)."""
        return {name: h.to_dict() for name, h in zip(self.classes, self.histograms, strict=True)}
