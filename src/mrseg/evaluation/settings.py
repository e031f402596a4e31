"""What an evaluation run is asked to do: the evaluation grid, which pixels count, ROC bins, panels,
which slides, and (optionally) the lesion-level FROC and slide-level classification of CAMELYON16.

:class:`EvaluateSettings` and :class:`LesionSettings` are torch-free, so the CLI can take its
defaults from them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from mrseg.core.errors import ConfigError
from mrseg.core.tissue_spec import DEFAULT_TISSUE_MPP
from mrseg.evaluation.metrics import DEFAULT_BINS

Within = Literal["tissue", "slide"]
MissingTruth = Literal["skip", "normal"]
DetectionRule = Literal["nms", "components"]
SlideScoreRule = Literal["max", "area"]

#: CAMELYON16's level-0 resolution (µm/px) and evaluation level: the challenge's mask is level 5.
CAMELYON16_MPP = 0.243
CAMELYON16_EVALUATION_LEVEL = 5
#: The challenge's evaluation resolution in µm/px: level 5 of a 0.243 µm/px slide (7.776 µm/px).
FROC_MPP = CAMELYON16_MPP * 2**CAMELYON16_EVALUATION_LEVEL
#: Average false positives per slide at which the challenge reads the sensitivity (their mean is the score).
FROC_FP_RATES: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: NCRF's non-maximum-suppression radius: 12 pixels at level 6 of a 0.243 µm/px slide (186.6 µm).
NCRF_RADIUS_UM = 12 * CAMELYON16_MPP * 2**6


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")


@dataclass(frozen=True)
class LesionSettings:
    """Lesion-level FROC and slide-level classification (CAMELYON16's rules; ``docs/evaluation.md``).

    Attributes
    ----------
    mpp
        Resolution of the evaluation mask (µm/px): the challenge's level 5 of 0.243 µm/px, for any
        slide computed from its own mpp (``ReadGrid.covering(dimensions, slide_mpp, mpp)``).
    distance_um
        A pixel belongs to a lesion's evaluation region when its distance to the nearest tumour pixel
        is below this many microns: the official script's threshold ``75 / (0.243 * 2**5 * 2)``
        level-5 pixels, i.e. 37.5 µm, which grows each lesion's diameter by the challenge's 75 µm.
    itc_um
        Regions (after that growth) whose major axis is shorter than this are isolated tumour cells:
        neither hit nor false positive (the challenge's 200 µm + 75 µm).
    detection
        ``"nms"``: non-maximum suppression of local maxima (NCRF); ``"components"``: one detection
        per 8-connected component of the thresholded map, at its maximum.
    detection_mpp
        Resolution (µm/px) the probability map is read at to find detections and the slide score.
    threshold
        Detections are map pixels with probability above this (both rules).
    nms_radius_um
        Half side of the square NMS suppresses around each detection (NCRF: 12 px at level 6).
    slide_score
        ``"max"``: the slide's score is the map's maximum (at ``detection_mpp``); ``"area"``: the
        area in mm² of map pixels whose probability is at least ``area_threshold``.
    area_threshold
        Probability threshold of the ``"area"`` slide score.
    fp_rates
        Average false positives per slide at which the sensitivity is read (their mean is the score).

    Raises
    ------
    ConfigError
        A non-positive length or resolution, a threshold outside [0, 1), an unknown rule, no FP rate.
    """

    mpp: float = FROC_MPP
    distance_um: float = 37.5
    itc_um: float = 275.0
    detection: DetectionRule = "nms"
    detection_mpp: float = FROC_MPP
    threshold: float = 0.5
    nms_radius_um: float = NCRF_RADIUS_UM
    slide_score: SlideScoreRule = "max"
    area_threshold: float = 0.5
    fp_rates: tuple[float, ...] = FROC_FP_RATES

    def __post_init__(self) -> None:
        for name in ("mpp", "distance_um", "itc_um", "detection_mpp", "nms_radius_um"):
            _positive(f"lesion {name}", getattr(self, name))
        _choice("detection", self.detection, ("nms", "components"))
        _choice("slide score", self.slide_score, ("max", "area"))
        for name in ("threshold", "area_threshold"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value < 1):
                raise ConfigError(f"lesion {name} must be a probability in [0, 1), got {value!r}")
        rates = tuple(float(r) for r in self.fp_rates)
        if not rates:
            raise ConfigError("fp_rates needs at least one average false-positive count")
        for rate in rates:
            _positive("every fp rate", rate)
        object.__setattr__(self, "fp_rates", rates)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (``settings.lesions`` of ``metrics.json``)."""
        return asdict(self) | {"fp_rates": list(self.fp_rates)}


@dataclass(frozen=True)
class EvaluateSettings:
    """Settings of :func:`mrseg.evaluation.evaluate.evaluate`.

    Attributes
    ----------
    mpp
        Resolution of the evaluation grid in microns per pixel (``ReadGrid.covering`` of each slide).
    within
        ``"tissue"``: count only pixels inside the slide's tissue mask; ``"slide"``: every pixel.
    bins
        Histogram bins over [0, 1] (the ROC's resolution; >= 2).
    tissue_mpp
        Resolution of the tissue mask (microns per pixel) with ``within="tissue"``.
    panels
        Slide stems to draw a qualitative panel for; None: the first slide.
    panel_max_side
        Longest side of a panel's images in pixels.
    slides
        Evaluate only these slide stems (None: every slide with ground truth or a prediction).
    missing_truth
        A slide with predictions but no truth file: ``"skip"`` it (named in ``metrics.json``) or
        count it as ``"normal"`` (tumour-free, as the CAMELYON16 script treats slides without a mask).
    lesions
        Also compute the lesion-level FROC and slide-level ROC AUC (None: pixel metrics only).

    Raises
    ------
    ConfigError
        An unknown ``within`` or ``missing_truth``, a non-positive mpp, fewer than two bins, a panel
        side below 16, or an empty ``slides``.
    """

    mpp: float = 2.0
    within: Within = "tissue"
    bins: int = DEFAULT_BINS
    tissue_mpp: float = DEFAULT_TISSUE_MPP
    panels: tuple[str, ...] | None = None
    panel_max_side: int = 768
    slides: tuple[str, ...] | None = None
    missing_truth: MissingTruth = "skip"
    lesions: LesionSettings | None = None

    def __post_init__(self) -> None:
        if self.within not in ("tissue", "slide"):
            raise ConfigError(f"within must be 'tissue' or 'slide', got {self.within!r}")
        _choice("missing_truth", self.missing_truth, ("skip", "normal"))
        for name in ("mpp", "tissue_mpp"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ConfigError(f"evaluation {name} must be a positive number of µm/px, got {value!r}")
        if int(self.bins) != self.bins or self.bins < 2:
            raise ConfigError(f"bins must be an integer >= 2, got {self.bins!r}")
        if self.panel_max_side < 16:
            raise ConfigError(f"panel_max_side must be at least 16 pixels, got {self.panel_max_side}")
        if self.panels is not None:
            object.__setattr__(self, "panels", tuple(str(p) for p in self.panels))
        if self.slides is not None:
            slides = tuple(dict.fromkeys(str(s) for s in self.slides))
            if not slides:
                raise ConfigError("slides: the list of slides to evaluate is empty")
            object.__setattr__(self, "slides", slides)


__all__ = [
    "CAMELYON16_EVALUATION_LEVEL",
    "CAMELYON16_MPP",
    "FROC_FP_RATES",
    "FROC_MPP",
    "NCRF_RADIUS_UM",
    "DetectionRule",
    "EvaluateSettings",
    "LesionSettings",
    "MissingTruth",
    "SlideScoreRule",
    "Within",
]
