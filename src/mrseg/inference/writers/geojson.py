"""GeoJSON polygons (writer ``geojson``): QuPath-importable annotations of the predicted regions.

``<stem>.geojson`` (key ``geojson``): a FeatureCollection of ``Polygon`` annotations (with holes)
in level-0 pixel coordinates. For every class ``k = 1 .. C-1`` of the label spec, the regions where
its probability is ``>= threshold`` are traced on the map sampled (nearest) to at most
:data:`GEOJSON_MAX_SIDE` pixels; each feature carries the class's name and colour as its QuPath
classification ``{"name": ..., "color": [r, g, b]}``. A binary task gives the features of its one
foreground class (``"tumor"`` by default). With ``threshold <= 0.5`` regions of different classes
may overlap.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from rasterio import features
from rasterio.transform import Affine
from scipy import ndimage
from shapely.geometry import Polygon, mapping, shape

from mrseg.core.atomic import atomic_write_text
from mrseg.core.label_spec import RGB, LabelSpec
from mrseg.inference.merger import ProbabilityMap
from mrseg.inference.writers.base import WriteJob, Writer, register_writer
from mrseg.wsi.geometry import ReadGrid, sample_nearest

#: Longest side of the mask the GeoJSON polygons are traced on.
GEOJSON_MAX_SIDE = 8192


def _fit(shape_hw: tuple[int, int], max_side: int) -> tuple[int, int]:
    h, w = shape_hw
    f = min(1.0, max_side / max(h, w))
    return max(1, round(h * f)), max(1, round(w * f))


def mask_polygons(mask: np.ndarray, pixel_l0: float, min_area_px: float = 4.0) -> list[Polygon]:
    """Trace the regions of a bool ``(h, w)`` mask as pixel-exact shapely Polygons in level-0 pixels.

    Mask pixel ``(r, c)`` covers level-0 ``[c*s, (c+1)*s) x [r*s, (r+1)*s)`` with ``s = pixel_l0``.
    The polygons follow the pixel edges (GDAL's polygonize, through
    :func:`rasterio.features.shapes`): with their holes, islands inside holes as polygons of their
    own, and pixels that touch only at a corner as separate polygons (so every polygon is valid);
    rasterising them by pixel centres gives the mask back exactly. Connected regions
    (8-connectivity) smaller than ``min_area_px`` mask pixels are dropped first.
    """
    keep = np.asarray(mask, dtype=bool)
    if min_area_px > 1:
        regions, _ = ndimage.label(keep, structure=np.ones((3, 3), dtype=bool))
        small = np.bincount(regions.ravel()) < min_area_px
        small[0] = False
        keep = keep & ~small[regions]
    if not keep.any():
        return []
    pixels = keep.astype(np.uint8)
    shapes = features.shapes(pixels, mask=keep, connectivity=4, transform=Affine.scale(pixel_l0))
    return [shape(geometry) for geometry, _ in shapes]


def polygon_features(polygons: list[Any], name: str, color: RGB, *, simplify: float = 0.0) -> list[dict[str, Any]]:
    """GeoJSON annotation Features of ``polygons`` (level-0 coordinates) classified as ``name`` in ``color``."""
    features = []
    for poly in polygons:
        geom = poly.simplify(simplify, preserve_topology=True) if simplify > 0 else poly
        if geom.is_empty:
            continue
        features.append(
            {
                "type": "Feature",
                "geometry": mapping(geom),
                "properties": {"objectType": "annotation", "classification": {"name": name, "color": list(color)}},
            }
        )
    return json.loads(json.dumps(features))  # plain lists, no tuples


def class_polygons(
    pmap: ProbabilityMap, slide_mpp: float, threshold: float, *, max_side: int = GEOJSON_MAX_SIDE
) -> tuple[list[tuple[int, list[Any]]], float]:
    """``[(class k, polygons of probability >= threshold)]`` in label order, and the tracing grid's pixel (level-0 px).

    The map is sampled (nearest) to at most ``max_side`` pixels and traced by :func:`mask_polygons`.
    """
    map_grid = ReadGrid.of_map(pmap.shape, pmap.mpp / slide_mpp)
    h, w = _fit(map_grid.shape, max_side)
    mask_grid = ReadGrid(map_grid.box_l0, (w, h))
    pixel_l0 = mask_grid.scale[0]  # level-0 pixels per mask pixel
    out = []
    for k, channel in enumerate(pmap.channels, start=1):
        prob = pmap.to_probability(sample_nearest(channel, map_grid, mask_grid))
        out.append((k, mask_polygons(prob >= threshold, pixel_l0)))
    return out, pixel_l0


def class_features(
    pmap: ProbabilityMap, labels: LabelSpec, slide_mpp: float, threshold: float, *, max_side: int = GEOJSON_MAX_SIDE
) -> list[dict[str, Any]]:
    """Features of every foreground class of ``pmap``: regions of probability ``>= threshold``, in label order."""
    classes, pixel_l0 = class_polygons(pmap, slide_mpp, threshold, max_side=max_side)
    features: list[dict[str, Any]] = []
    for k, polygons in classes:
        features += polygon_features(polygons, labels.classes[k], labels.color(k), simplify=pixel_l0 * 0.5)
    return features


def write_geojson(
    path: str | os.PathLike[str], pmap: ProbabilityMap, labels: LabelSpec, slide_mpp: float, threshold: float
) -> tuple[Path, int]:
    """Write the FeatureCollection of :func:`class_features`; return the path and the number of features."""
    features = class_features(pmap, labels, slide_mpp, threshold)
    atomic_write_text(path, json.dumps({"type": "FeatureCollection", "features": features}))
    return Path(path), len(features)


@register_writer
class GeoJsonWriter(Writer):
    """``<stem>.geojson``; reports ``polygons`` (the number of features)."""

    name = "geojson"
    concurrent = True

    def outputs(self, stem: str, labels: LabelSpec) -> dict[str, str]:
        return {"geojson": f"{stem}.geojson"}

    def write(self, job: WriteJob) -> dict[str, Any]:
        pred = job.prediction
        _, n = write_geojson(job.path("geojson"), pred.map, job.labels, pred.slide_mpp, job.settings.threshold)
        return {"polygons": n}


__all__ = [
    "GEOJSON_MAX_SIDE",
    "GeoJsonWriter",
    "class_features",
    "class_polygons",
    "mask_polygons",
    "polygon_features",
    "write_geojson",
]
