"""Slide-level classification: ROC curve and AUC of one score per slide against tumour / normal.

A slide is positive when its truth holds any tumour (label > 0) pixel or region, isolated tumour
cells included (CAMELYON16's reference labels count such slides as tumour). The AUC is the
Mann-Whitney statistic: the probability that a random positive slide scores higher than a random
negative one, ties counting one half (equal to :func:`sklearn.metrics.roc_auc_score`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata


def slide_auc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """ROC AUC of ``scores`` for ``positive`` slides (NaN unless both classes are present)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)  # average ranks: ties count one half
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def slide_roc(scores: Sequence[float], positive: Sequence[bool]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``fpr, tpr, thresholds`` from (0, 0) (threshold inf) to (1, 1); a slide is positive at ``score >= t``."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    thresholds = np.unique(s)[::-1]
    tp = np.array([np.count_nonzero(y & (s >= t)) for t in thresholds], dtype=np.float64)
    fp = np.array([np.count_nonzero(~y & (s >= t)) for t in thresholds], dtype=np.float64)
    tpr = np.concatenate([[0.0], tp / max(int(y.sum()), 1)])
    fpr = np.concatenate([[0.0], fp / max(int((~y).sum()), 1)])
    return fpr, tpr, np.concatenate([[np.inf], thresholds])


__all__ = ["slide_auc", "slide_roc"]
