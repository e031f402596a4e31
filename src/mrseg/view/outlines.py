"""Vector layers of the viewer: ground-truth outlines and predicted contours, as rings in level-0 pixels.

An outline is ``{"label", "name", "color", "rings"}`` with each ring a flat list ``[x0, y0, x1, y1,
...]`` of level-0 coordinates (one decimal), closed implicitly. Vector annotations (ASAP XML,
GeoJSON) give the exterior and interior rings of each label's effective region (after exclusions
and precedence: :attr:`VectorAnnotations.geometries <mrseg.wsi.annotations.VectorAnnotations.geometries>`);
label masks, and probability maps at a threshold, are traced (marching squares) on a grid of at
most :data:`TRACE_MAX_SIDE` pixels over the slide.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely
from skimage.measure import find_contours

from mrseg.core.label_spec import LabelSpec
from mrseg.wsi.annotations import Annotations, VectorAnnotations
from mrseg.wsi.geometry import ReadGrid

#: Longest side of the grid masks and maps are traced on.
TRACE_MAX_SIDE = 2048
#: Rings with fewer vertices are dropped (specks).
MIN_RING_VERTICES = 4

Outline = dict[str, Any]


def hex_color(rgb: tuple[int, ...]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb[:3])


def _outline(label: int, labels: LabelSpec, rings: list[np.ndarray]) -> Outline:
    known = 0 < label < labels.num_classes
    return {
        "label": int(label),
        "name": labels.classes[label] if known else f"label {label}",
        "color": hex_color(labels.color(label)) if known else "#ffff00",
        "rings": [np.round(r[:, :2], 1).ravel().tolist() for r in rings if len(r) >= MIN_RING_VERTICES],
    }


def vector_outlines(annotations: VectorAnnotations, labels: LabelSpec, simplify_l0: float = 0.5) -> list[Outline]:
    """Exterior and interior rings of each label's region, simplified by ``simplify_l0`` level-0 pixels."""
    out = []
    for label, geometry in annotations.geometries.items():
        rings: list[np.ndarray] = []
        for part in shapely.get_parts(geometry.simplify(simplify_l0, preserve_topology=True)):
            rings.append(np.asarray(part.exterior.coords))
            rings += [np.asarray(r.coords) for r in part.interiors]
        out.append(_outline(label, labels, rings))
    return out


def trace_grid(dimensions_l0: tuple[int, int], max_side: int = TRACE_MAX_SIDE) -> ReadGrid:
    """The whole slide on a grid whose longest side is at most ``max_side`` pixels (square pixels)."""
    w0, h0 = dimensions_l0
    step = max(1.0, max(w0, h0) / max_side)
    return ReadGrid((0.0, 0.0, float(w0), float(h0)), (max(1, round(w0 / step)), max(1, round(h0 / step))))


def trace(mask: np.ndarray, grid: ReadGrid) -> list[np.ndarray]:
    """Rings ``(n, 2)`` of ``(x, y)`` level-0 points around the ``True`` regions of a bool mask on ``grid``.

    The iso-line at 0.5 between pixel centres (marching squares); the mask is padded so that
    regions touching its border are closed.
    """
    if not mask.any():
        return []
    x0, y0, _, _ = grid.box_l0
    sx, sy = grid.scale
    rings = []
    for contour in find_contours(np.pad(mask.astype(np.float32), 1), 0.5):
        rows, cols = contour[:, 0] - 1, contour[:, 1] - 1  # unpadded pixel indices (centres at +0.5)
        rings.append(np.stack([x0 + (cols + 0.5) * sx, y0 + (rows + 0.5) * sy], axis=1))
    return rings


def annotation_outlines(annotations: Annotations, labels: LabelSpec, dimensions_l0: tuple[int, int]) -> list[Outline]:
    """Outlines of every label of ground-truth ``annotations`` (vector rings, or a mask traced)."""
    if isinstance(annotations, VectorAnnotations):
        return vector_outlines(annotations, labels)
    grid = trace_grid(dimensions_l0)
    mask = annotations.rasterize(grid)
    return [_outline(int(k), labels, trace(mask == k, grid)) for k in np.unique(mask) if k > 0]


def map_outlines(
    probability: np.ndarray, grid: ReadGrid, threshold: float, label: int, labels: LabelSpec
) -> list[Outline]:
    """The contour of ``probability >= threshold`` (a map on ``grid``) as the outline of class ``label``."""
    return [_outline(label, labels, trace(probability >= threshold, grid))]


__all__ = [
    "MIN_RING_VERTICES",
    "TRACE_MAX_SIDE",
    "Outline",
    "annotation_outlines",
    "hex_color",
    "map_outlines",
    "trace",
    "trace_grid",
    "vector_outlines",
]
