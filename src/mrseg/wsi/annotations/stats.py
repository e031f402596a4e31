"""Summaries and overlay pictures of annotations (``mrseg annotations``); the check that they lie on their slide."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import shapely
from PIL import Image, ImageDraw
from skimage.segmentation import find_boundaries

from mrseg.core.atomic import atomic_path
from mrseg.wsi.annotations.base import EXCLUDE, Annotations
from mrseg.wsi.annotations.vector import VectorAnnotations
from mrseg.wsi.geometry import Size

log = logging.getLogger(__name__)

OVERLAY_MAX_SIDE = 2048
"""Longest side of the overlay thumbnail in pixels."""

_COLOURS = {
    EXCLUDE: (30, 90, 255),
    1: (0, 200, 0),
    2: (255, 140, 0),
    3: (230, 0, 200),
    4: (0, 200, 220),
}


class _Thumbnailer(Protocol):
    dimensions: Size
    mpp: float

    def thumbnail(self, mpp: float) -> np.ndarray: ...


def outside_fraction(annotations: Annotations, dimensions: Size) -> float:
    """Fraction of the annotated area (every region, exclusions included) outside the slide ``(0, 0, W0, H0)``.

    0 for mask images (they are scaled onto the slide) and for annotations without area.
    """
    if not isinstance(annotations, VectorAnnotations) or not annotations.regions:
        return 0.0
    union = shapely.union_all([r.geometry for r in annotations.regions])
    if union.is_empty or union.area <= 0:
        return 0.0
    inside = shapely.intersection(union, shapely.box(0, 0, float(dimensions[0]), float(dimensions[1]))).area
    return max(0.0, 1.0 - inside / union.area)


def warn_outside(annotations: Annotations, dimensions: Size, slide: str | os.PathLike[str]) -> float:
    """Log a warning naming both files when part of the annotations lies outside the slide; return the fraction."""
    fraction = outside_fraction(annotations, dimensions)
    if fraction > 1e-3:
        log.warning(
            "%s: %.1f%% of the annotated area lies outside the slide %s (%dx%d level-0 px): another slide's "
            "annotations, or coordinates in another frame?",
            annotations.describe(), 100 * fraction, slide, dimensions[0], dimensions[1],
        )  # fmt: skip
    return fraction


def summarize(annotations: Annotations, mpp: float | None = None) -> dict[str, Any]:
    """JSON-ready summary: per-group and per-label counts and areas, bounding box.

    Group areas are those of the group's own annotations (before exclusions and precedence);
    label areas are the effective ones (after them).

    Parameters
    ----------
    mpp
        Microns per level-0 pixel; areas in mm^2 are given only when it is known.
    """
    scale = None if mpp is None else (mpp * mpp) / 1e6  # level-0 px^2 -> mm^2
    labels: list[dict[str, Any]] = []
    for stats in annotations.label_stats():
        labels.append(
            {
                "label": stats.label,
                "role": "exclusion" if stats.label == EXCLUDE else ("background" if stats.label == 0 else "class"),
                "count": stats.count,
                "groups": list(stats.groups),
                "area_l0_px2": stats.area_l0,
                "area_mm2": None if scale is None else stats.area_l0 * scale,
            }
        )
    groups: list[dict[str, Any]] = []
    if isinstance(annotations, VectorAnnotations):
        by_group: dict[tuple[str, int], list[Any]] = {}
        for region in annotations.regions:
            by_group.setdefault((region.group, region.label), []).append(region.geometry)
        for (group, label), geoms in sorted(by_group.items()):
            area = float(shapely.union_all(geoms).area)
            groups.append(
                {
                    "group": group,
                    "label": label,
                    "count": len(geoms),
                    "area_l0_px2": area,
                    "area_mm2": None if scale is None else area * scale,
                }
            )
    positive = [entry for entry in labels if entry["label"] > 0]
    total_l0 = float(sum(entry["area_l0_px2"] for entry in positive))
    return {
        "file": str(annotations.path) if annotations.path else None,
        "kind": annotations.kind,
        "annotations": len(annotations.regions) if isinstance(annotations, VectorAnnotations) else None,
        "groups": groups,
        "labels": labels,
        "total_area_l0_px2": total_l0,
        "total_area_mm2": None if scale is None else total_l0 * scale,
        "mpp": mpp,
        "bounds_l0": list(annotations.bounds_l0) if annotations.bounds_l0 else None,
    }


def overlay_image(annotations: Annotations, slide: _Thumbnailer, max_side: int = OVERLAY_MAX_SIDE) -> np.ndarray:
    """The slide thumbnail (longest side <= ``max_side``) with annotation outlines drawn: ``uint8 (h, w, 3)``.

    Vector annotations are drawn as polygon outlines (exclusions in blue); mask annotations as the
    boundaries of their labels rasterised on the thumbnail grid.
    """
    w0, h0 = slide.dimensions
    thumb_mpp = max(slide.mpp, slide.mpp * max(w0, h0) / max_side)
    thumb = slide.thumbnail(thumb_mpp)
    h, w = thumb.shape[:2]
    sx, sy = w / w0, h / h0
    image = Image.fromarray(np.ascontiguousarray(thumb[..., :3]))
    draw = ImageDraw.Draw(image)
    width = max(1, round(max(w, h) / 700))
    if isinstance(annotations, VectorAnnotations):
        for region in annotations.regions:
            colour = _COLOURS.get(region.label, (255, 255, 0))
            polys = getattr(region.geometry, "geoms", [region.geometry])
            for poly in polys:
                for ring in (poly.exterior, *poly.interiors):
                    xy = [(x * sx, y * sy) for x, y in np.asarray(ring.coords)[:, :2]]
                    draw.line(xy, fill=colour, width=width)
        return np.asarray(image)
    labels = annotations.rasterize((0, 0, w0, h0), (w, h))
    out = np.asarray(image).copy()
    for label in annotations.labels:
        edge = find_boundaries(labels == label, mode="inner")
        out[edge] = _COLOURS.get(label, (255, 255, 0))
    return out


def write_overlay(annotations: Annotations, slide: _Thumbnailer, path: str | os.PathLike[str]) -> Path:
    """Write :func:`overlay_image` as a PNG, atomically; returns the path."""
    path = Path(path)
    picture = overlay_image(annotations, slide)
    with atomic_path(path) as tmp:
        Image.fromarray(picture).save(tmp, format="PNG")
    return path
