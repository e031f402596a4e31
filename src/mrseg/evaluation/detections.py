"""From a probability map to lesion detections (level-0 points with a probability), and the slide score.

Two rules (``LesionSettings.detection``), both on the map sampled at ``detection_mpp``:

- ``"nms"``, non-maximum suppression as NCRF's ``nms.py``: repeatedly take the most probable
  remaining pixel while its probability is above ``threshold``, report it, and set to zero the
  square of half side ``radius_px`` around it (NCRF clears ``[x - r, x + r)``; here the square is
  symmetric, ``[x - r, x + r]``). Implemented as one pass over the pixels above the threshold in
  decreasing probability (ties: row-major order), which picks the same pixels as the repeated
  maximum without rescanning the map.
- ``"components"``: the 8-connected components of the pixels above ``threshold``; each gives one
  detection at its most probable pixel (the first in row-major order on ties), with that probability.

A detection's level-0 point is its pixel's centre on the detection grid.

Slide scores (``LesionSettings.slide_score``): ``"max"``, the highest probability of the map at
``detection_mpp``; ``"area"``, the area in mm² of the pixels whose probability is at least
``area_threshold``.
"""

from __future__ import annotations

import numpy as np
from skimage import measure

from mrseg.evaluation.froc import Detections
from mrseg.evaluation.settings import LesionSettings
from mrseg.wsi.geometry import ReadGrid


def nms_peaks(prob: np.ndarray, threshold: float, radius_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices (row-major) and probabilities of the NMS detections of ``prob`` (``(H, W)`` floats)."""
    flat = np.asarray(prob, dtype=np.float64).ravel()
    _height, width = prob.shape
    candidates = np.flatnonzero(flat > threshold)
    order = candidates[np.argsort(-flat[candidates], kind="stable")]
    suppressed = np.zeros(prob.shape, dtype=bool)
    kept: list[int] = []
    for index in order.tolist():
        row, col = divmod(index, width)
        if suppressed[row, col]:
            continue
        kept.append(index)
        suppressed[max(0, row - radius_px) : row + radius_px + 1, max(0, col - radius_px) : col + radius_px + 1] = True
    indices = np.asarray(kept, dtype=np.int64)
    return indices, flat[indices]


def component_peaks(prob: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices and probabilities of the maximum of each 8-connected component of ``prob > threshold``.

    Components come in the order of their first pixel (row-major); ties within one go to the first pixel.
    """
    flat = np.asarray(prob, dtype=np.float64).ravel()
    labels = measure.label(np.asarray(prob) > threshold, connectivity=2).ravel()
    pixels = np.flatnonzero(labels)
    order = pixels[np.lexsort((pixels, -flat[pixels], labels[pixels]))]
    ordered = labels[order]
    first = np.concatenate([[True], ordered[1:] != ordered[:-1]]) if order.size else np.zeros(0, bool)
    indices = order[first]
    return indices, flat[indices]


def detect(prob: np.ndarray, grid: ReadGrid, slide_mpp: float, settings: LesionSettings) -> Detections:
    """The detections of ``prob`` (probabilities on ``grid`` of a slide of level-0 ``slide_mpp``) by the rule."""
    if settings.detection == "nms":
        radius_px = max(0, round(settings.nms_radius_um / grid.mpp(slide_mpp)))
        indices, probs = nms_peaks(prob, settings.threshold, radius_px)
    else:
        indices, probs = component_peaks(prob, settings.threshold)
    rows, cols = np.divmod(indices, grid.width)
    xs, ys = grid.centers()
    return Detections(np.stack([xs[cols], ys[rows]], axis=1), probs, settings.detection)


def slide_score(prob: np.ndarray, grid: ReadGrid, slide_mpp: float, settings: LesionSettings) -> float:
    """The slide's score: the map's maximum, or the area (mm²) of pixels with probability >= ``area_threshold``."""
    if settings.slide_score == "max":
        return float(np.max(prob)) if prob.size else 0.0
    sx, sy = grid.scale
    pixel_mm2 = sx * sy * slide_mpp**2 / 1e6
    return float(np.count_nonzero(prob >= settings.area_threshold) * pixel_mm2)


__all__ = ["component_peaks", "detect", "nms_peaks", "slide_score"]
