"""What one model accumulates on one slide or pooled over slides: binary and per-class metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mrseg.evaluation.maps import SlideMaps
from mrseg.evaluation.metrics import BinaryHistogram, ClassMetrics
from mrseg.evaluation.plan import EvaluationPlan
from mrseg.wsi.geometry import ReadGrid


@dataclass
class Scores:
    """What one model accumulates, on one slide or pooled over slides.

    Attributes
    ----------
    binary
        Foreground probability, positives = truth label > 0.
    classes
        Per-class histograms and the confusion matrix (multi-class label specs only).
    predicted_from
        Where the predicted labels came from (``"label map"``, ``"argmax of class maps"``).
    """

    binary: BinaryHistogram
    classes: ClassMetrics | None = None
    predicted_from: set[str] = field(default_factory=set)

    @classmethod
    def empty(cls, plan: EvaluationPlan) -> Scores:
        bins = plan.settings.bins
        return cls(BinaryHistogram(bins), ClassMetrics(plan.labels.classes, bins) if plan.multiclass else None)

    def add(self, maps: SlideMaps, strip: ReadGrid, truth: np.ndarray, valid: np.ndarray | None) -> None:
        """Add one strip: sample ``maps`` on ``strip`` and count its pixels against ``truth`` labels."""
        values = maps.foreground.sample(strip)
        self.binary.update_encoded(values, maps.foreground.encoding, truth > 0, valid)
        if self.classes is not None:
            stored = maps.class_values(strip, values)
            self.classes.update(stored, truth, maps.predicted_labels(strip, stored), valid)
            self.predicted_from.add(maps.predicted_from)

    def __iadd__(self, other: Scores) -> Scores:
        self.binary += other.binary
        if self.classes is not None and other.classes is not None:
            self.classes += other.classes
        self.predicted_from |= other.predicted_from
        return self


__all__ = ["Scores"]
