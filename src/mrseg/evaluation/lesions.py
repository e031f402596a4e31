"""Lesion-level and slide-level scoring of one slide, and their summary over slides (``metrics.json``).

Per slide (:func:`score_lesions`): the truth is rasterised on the evaluation-mask grid
(``ReadGrid.covering`` at ``LesionSettings.mpp``) and turned into the CAMELYON16 evaluation mask
(:func:`mrseg.evaluation.froc.lesion_mask`); each model's foreground map is sampled at
``detection_mpp`` (nearest, :class:`mrseg.evaluation.maps.MapReader`), its detections found
(:func:`mrseg.evaluation.detections.detect`) and matched, and its slide score computed. Over slides
(:func:`lesion_summary`): the FROC with the sensitivity at each FP rate and their mean, and the
slide-level ROC AUC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mrseg.core.prediction_record import PredictionRecord
from mrseg.evaluation.detections import detect, slide_score
from mrseg.evaluation.froc import FrocCurve, SlideLesions, froc_curve, lesion_mask, match_detections
from mrseg.evaluation.maps import MapReader
from mrseg.evaluation.settings import LesionSettings
from mrseg.evaluation.slide_level import slide_auc, slide_roc
from mrseg.evaluation.truth import SlideTruth
from mrseg.wsi.geometry import ReadGrid


@dataclass(frozen=True)
class SlideLesionScore:
    """One model on one slide: matched detections, whether the slide has tumour, and its slide score."""

    lesions: SlideLesions
    tumour: bool
    score: float

    def summary(self) -> dict[str, Any]:
        return {"tumour": self.tumour, "slide_score": self.score} | self.lesions.summary()


def score_lesions(
    settings: LesionSettings, truth: SlideTruth, records: Mapping[str, PredictionRecord]
) -> dict[str, SlideLesionScore]:
    """Every model's :class:`SlideLesionScore` on one slide (``records``: the models' records of that slide)."""
    first = next(iter(records.values()))
    grid = ReadGrid.covering(first.slide_dimensions, first.slide_mpp, settings.mpp)
    tumour_px = truth.labels(grid) > 0
    tumour = bool(tumour_px.any()) or any(label > 0 for label in truth.annotations.labels)
    mask = (
        lesion_mask(tumour_px, grid, first.slide_mpp, distance_um=settings.distance_um, itc_um=settings.itc_um)
        if tumour_px.any()
        else None
    )
    detection_grid = ReadGrid.covering(first.slide_dimensions, first.slide_mpp, settings.detection_mpp)
    out: dict[str, SlideLesionScore] = {}
    for name, record in records.items():
        with MapReader(record.map_path, record, settings.detection_mpp) as reader:
            prob = reader.to_probability(reader.sample(detection_grid))
        detections = detect(prob, detection_grid, record.slide_mpp, settings)
        score = slide_score(prob, detection_grid, record.slide_mpp, settings)
        out[name] = SlideLesionScore(match_detections(mask, detections), tumour, score)
    return out


def curve_dict(curve: FrocCurve) -> dict[str, Any]:
    """The FROC polyline as lists (thresholds: ``None`` for the first point, above every score)."""
    return {
        "fp_per_slide": curve.fp_per_slide.tolist(),
        "sensitivity": curve.sensitivity.tolist(),
        "thresholds": [None, *curve.thresholds[1:].tolist()],
    }


def lesion_summary(settings: LesionSettings, per_slide: Mapping[str, SlideLesionScore]) -> dict[str, Any]:
    """One model's ``lesions`` entry of ``metrics.json``: FROC, slide-level ROC AUC, per-slide counts."""
    stems = list(per_slide)
    curve = froc_curve([per_slide[s].lesions for s in stems])
    scores = [per_slide[s].score for s in stems]
    positive = [per_slide[s].tumour for s in stems]
    fpr, tpr, thresholds = slide_roc(scores, positive)
    return {
        "froc": {
            "score": curve.score(settings.fp_rates) if curve.n_lesions else float("nan"),
            "sensitivity": {f"{r:g}": curve.sensitivity_at(r) for r in settings.fp_rates},
            "n_slides": curve.n_slides,
            "n_lesions": curve.n_lesions,
            "n_itc": sum(per_slide[s].lesions.n_itc for s in stems),
            "n_fp": sum(per_slide[s].lesions.n_fp for s in stems),
            "detection": settings.detection,
            "curve": curve_dict(curve),
        },
        "slide": {
            "auc": slide_auc(scores, positive),
            "score": settings.slide_score,
            "n_tumour": sum(positive),
            "n_normal": len(positive) - sum(positive),
            "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": [None, *thresholds[1:].tolist()]},
        },
        "per_slide": {s: per_slide[s].summary() for s in stems},
    }


__all__ = ["SlideLesionScore", "curve_dict", "lesion_summary", "score_lesions"]
