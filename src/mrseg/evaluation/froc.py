"""Lesion-level FROC with the rules of the CAMELYON16 challenge's evaluation script (``Evaluation_FROC.py``).

What is implemented, in microns, and how it maps onto the official script (``docs/evaluation.md``):

1. **Evaluation mask** (:func:`lesion_mask`): the truth's tumour pixels (label > 0) on a grid at
   ``mpp`` (the script reads its mask at level 5 of a 0.243 µm/px slide, 7.776 µm/px; here the grid
   is ``ReadGrid.covering`` of the slide at that mpp, whatever the slide's own mpp). A pixel is in a
   lesion's region when the Euclidean distance from its centre to the nearest tumour pixel centre
   is **below** ``distance_um`` (the script: ``distance_transform_edt(...) < 75 / (0.243 * 2**5 *
   2)`` level-5 pixels, i.e. 37.5 µm: each lesion's diameter grows by the challenge's 75 µm). Holes
   are filled, then regions are labelled with 8-connectivity.
2. **Isolated tumour cells**: regions whose major axis (of the ellipse with the same second moments,
   as ``skimage.measure.regionprops``) is shorter than ``itc_um`` (275 µm = 200 µm + the 75 µm
   growth). A detection inside one is neither a hit nor a false positive.
3. **Matching** (:func:`match_detections`): a detection is a level-0 point with a probability. The
   pixel of the evaluation mask containing it gives its region: none (or outside the grid) -> false
   positive; an ITC -> ignored; a lesion -> a hit, and the lesion's score is the highest probability
   of the detections hitting it (a lesion hit twice counts once). Slides without tumour contribute
   false positives only.
4. **FROC** (:func:`froc_curve`): for every distinct detection probability ``t`` (highest first),
   the false positives per slide (``#FP with p >= t`` / slides) and the sensitivity (``#lesions whose
   score >= t`` / lesions), after the point (0, 0). The sensitivity at an average FP count ``r``
   (:func:`sensitivity_at`) interpolates linearly along that polyline, as ``numpy.interp`` does in
   the script (beyond the last point: its sensitivity). The challenge score is the mean at
   1/4, 1/2, 1, 2, 4, 8 FPs per slide.

One deliberate difference: the script sweeps ``sorted(set(scores))[1:]``, dropping the lowest
distinct score. That value is the 0 of a missed lesion or an ITC label on the real test set (so
nothing changes), but when every lesion is hit it silently drops the weakest real detection; here
every detection's probability is a threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from skimage import measure

from mrseg.wsi.geometry import ReadGrid


@dataclass(frozen=True)
class Detections:
    """Candidate lesions of one slide: level-0 points and their probabilities.

    Attributes
    ----------
    points_l0
        ``float64 (n, 2)`` of ``(x, y)`` in level-0 pixels.
    probs
        ``float64 (n,)`` probabilities (any order).
    rule
        How they were found (``"nms"``, ``"components"``, ``"given"``).
    """

    points_l0: np.ndarray
    probs: np.ndarray
    rule: str = "given"

    def __post_init__(self) -> None:
        points = np.asarray(self.points_l0, dtype=np.float64).reshape(-1, 2)
        probs = np.asarray(self.probs, dtype=np.float64).reshape(-1)
        if len(points) != len(probs):
            raise ValueError(f"{len(points)} points but {len(probs)} probabilities")
        object.__setattr__(self, "points_l0", points)
        object.__setattr__(self, "probs", probs)

    def __len__(self) -> int:
        return len(self.probs)


@dataclass(frozen=True)
class LesionMask:
    """The evaluation mask of one slide: labelled lesion regions on a grid, and which are ITCs.

    Attributes
    ----------
    labels
        ``int32 grid.shape``: 0 outside every region, ``1 .. n`` the regions (8-connected).
    grid
        Where the mask lies (level-0 box and size).
    itc
        Labels of the regions that are isolated tumour cells.
    """

    labels: np.ndarray
    grid: ReadGrid
    itc: frozenset[int] = field(default_factory=frozenset)

    @property
    def n_regions(self) -> int:
        return int(self.labels.max()) if self.labels.size else 0

    @property
    def lesions(self) -> list[int]:
        """Labels of the regions to be detected (every region but the ITCs)."""
        return [k for k in range(1, self.n_regions + 1) if k not in self.itc]

    def label_at(self, points_l0: np.ndarray) -> np.ndarray:
        """``int64 (n,)`` region label of the mask pixel containing each level-0 point (0 outside the grid)."""
        pts = np.asarray(points_l0, dtype=np.float64).reshape(-1, 2)
        cols, rows = self.grid.index_of(pts[:, 0], pts[:, 1])
        h, w = self.labels.shape
        inside = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
        out = np.zeros(len(pts), dtype=np.int64)
        out[inside] = self.labels[rows[inside], cols[inside]]
        return out


def lesion_mask(
    tumour: np.ndarray, grid: ReadGrid, slide_mpp: float, *, distance_um: float = 37.5, itc_um: float = 275.0
) -> LesionMask:
    """The evaluation mask of ``tumour`` (``bool grid.shape``, truth label > 0) on ``grid``.

    Parameters
    ----------
    tumour
        Tumour pixels on ``grid``.
    grid
        The evaluation grid (``ReadGrid.covering`` of the slide at the evaluation mpp).
    slide_mpp
        Level-0 µm/px of the slide (the grid's pixel is ``grid.scale * slide_mpp`` microns).
    distance_um
        Pixels closer than this (centre to nearest tumour centre, µm) join the lesion.
    itc_um
        Regions with a major axis below this (µm) are isolated tumour cells.
    """
    tumour = np.asarray(tumour, dtype=bool)
    labels = np.zeros(tumour.shape, dtype=np.int32)
    if not tumour.any():
        return LesionMask(labels, grid)
    mpp_x, mpp_y = (s * slide_mpp for s in grid.scale)
    # Only pixels within distance_um of a tumour pixel can join a region: work in that box. Its edges
    # are either the grid's or at least ``pad`` pixels from any tumour (never in a region), so hole
    # filling and labelling equal those of the whole grid.
    pad = math.ceil(distance_um / min(mpp_x, mpp_y)) + 1
    rows, cols = np.nonzero(tumour)
    r0, c0 = max(0, int(rows.min()) - pad), max(0, int(cols.min()) - pad)
    r1, c1 = min(tumour.shape[0], int(rows.max()) + pad + 1), min(tumour.shape[1], int(cols.max()) + pad + 1)
    crop = tumour[r0:r1, c0:c1]
    distance = ndimage.distance_transform_edt(~crop, sampling=(mpp_y, mpp_x))
    regions = ndimage.binary_fill_holes(distance < distance_um)
    labelled = measure.label(regions, connectivity=2).astype(np.int32)
    labels[r0:r1, c0:c1] = labelled
    mpp = (mpp_x + mpp_y) / 2
    itc = frozenset(int(p.label) for p in measure.regionprops(labels) if p.axis_major_length * mpp < itc_um)
    return LesionMask(labels, grid, itc)


@dataclass(frozen=True)
class SlideLesions:
    """One model's detections on one slide, matched against its evaluation mask.

    Attributes
    ----------
    lesion_scores
        ``float64 (n_lesions,)``: the highest probability of a detection in each non-ITC lesion, 0 when
        none hit it.
    fp_probs
        Probabilities of the false positives.
    n_itc
        Isolated-tumour-cell regions of the slide.
    ignored
        Detections inside an ITC (neither hit nor false positive).
    detections
        Detections found on the slide.
    rule
        How they were found.
    """

    lesion_scores: np.ndarray
    fp_probs: np.ndarray
    n_itc: int = 0
    ignored: int = 0
    detections: int = 0
    rule: str = "given"

    @property
    def n_lesions(self) -> int:
        return len(self.lesion_scores)

    @property
    def hits(self) -> int:
        """Lesions hit by at least one detection."""
        return int(np.count_nonzero(self.lesion_scores > 0))

    @property
    def n_fp(self) -> int:
        return len(self.fp_probs)

    def summary(self) -> dict[str, int]:
        return {
            "lesions": self.n_lesions,
            "itc": self.n_itc,
            "detected": self.hits,
            "detections": self.detections,
            "fp": self.n_fp,
            "ignored_itc": self.ignored,
        }


def match_detections(mask: LesionMask | None, detections: Detections) -> SlideLesions:
    """Match ``detections`` against ``mask`` (None: a slide without tumour, every detection is a false positive)."""
    probs = detections.probs
    if mask is None or mask.n_regions == 0:
        return SlideLesions(np.zeros(0), probs.copy(), detections=len(probs), rule=detections.rule)
    hit = mask.label_at(detections.points_l0)
    best = np.zeros(mask.n_regions + 1)
    np.maximum.at(best, hit, probs)
    in_itc = np.isin(hit, sorted(mask.itc))
    return SlideLesions(
        lesion_scores=best[mask.lesions],
        fp_probs=probs[hit == 0],
        n_itc=len(mask.itc),
        ignored=int(np.count_nonzero(in_itc)),
        detections=len(probs),
        rule=detections.rule,
    )


@dataclass(frozen=True)
class FrocCurve:
    """The FROC polyline over slides: points from the highest threshold down, after (0, 0).

    Attributes
    ----------
    fp_per_slide, sensitivity, thresholds
        ``float64 (k + 1,)``; entry 0 is the point (0, 0) above every threshold (threshold ``inf``).
    n_slides, n_lesions
        Slides and (non-ITC) lesions the curve counts.
    """

    fp_per_slide: np.ndarray
    sensitivity: np.ndarray
    thresholds: np.ndarray
    n_slides: int
    n_lesions: int

    def sensitivity_at(self, rate: float) -> float:
        """Sensitivity at ``rate`` average false positives per slide (NaN without lesions)."""
        if self.n_lesions == 0:
            return float("nan")
        return sensitivity_at(self.fp_per_slide, self.sensitivity, rate)

    def score(self, rates: Sequence[float]) -> float:
        """Mean sensitivity at ``rates`` (the challenge's score at 1/4 .. 8 FPs per slide)."""
        return float(np.mean([self.sensitivity_at(r) for r in rates]))


def sensitivity_at(fp_per_slide: np.ndarray, sensitivity: np.ndarray, rate: float) -> float:
    """Linear interpolation along the polyline ``(fp_per_slide, sensitivity)`` (non-decreasing x) at ``rate``.

    Where several points share an x (a vertical step), the value at exactly that x is the last one's
    (the highest sensitivity), and the segment leading there ends at the first one's: what
    ``numpy.interp`` gives in the official script. Beyond the last point: the last sensitivity.
    """
    j = int(np.searchsorted(fp_per_slide, rate, side="right")) - 1
    if j >= len(fp_per_slide) - 1:
        return float(sensitivity[-1])
    if j < 0:
        return float(sensitivity[0])
    x0, x1 = fp_per_slide[j], fp_per_slide[j + 1]
    y0, y1 = sensitivity[j], sensitivity[j + 1]
    return float(y0 + (y1 - y0) * (rate - x0) / (x1 - x0))


def froc_curve(slides: Sequence[SlideLesions]) -> FrocCurve:
    """The FROC over ``slides`` (every evaluated slide, tumour or not, counts in the FP average)."""
    fps = np.sort(np.concatenate([s.fp_probs for s in slides] + [np.zeros(0)]))
    scores = np.sort(np.concatenate([s.lesion_scores for s in slides] + [np.zeros(0)]))
    n_lesions = len(scores)
    hit_scores = scores[scores > 0]
    thresholds = np.unique(np.concatenate([fps, hit_scores]))[::-1]
    n_fp = len(fps) - np.searchsorted(fps, thresholds, side="left")
    n_hit = len(scores) - np.searchsorted(scores, thresholds, side="left")
    n_slides = max(1, len(slides))
    return FrocCurve(
        fp_per_slide=np.concatenate([[0.0], n_fp / n_slides]),
        sensitivity=np.concatenate([[0.0], n_hit / max(n_lesions, 1)]),
        thresholds=np.concatenate([[np.inf], thresholds]),
        n_slides=len(slides),
        n_lesions=n_lesions,
    )


__all__ = [
    "Detections",
    "FrocCurve",
    "LesionMask",
    "SlideLesions",
    "froc_curve",
    "lesion_mask",
    "match_detections",
    "sensitivity_at",
]
