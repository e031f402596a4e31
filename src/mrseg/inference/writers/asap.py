"""Predicted regions as ASAP XML (writer ``asap``): ``<stem>_regions.xml``, opened over the slide by ASAP.

For every class ``k = 1 .. C-1`` of the label spec, the regions where its probability is
``>= threshold`` (traced as for the GeoJSON writer, :func:`~mrseg.inference.writers.geojson.class_polygons`)
become ``Polygon`` annotations of the group named after the class, in the class's colour. ASAP polygons
have no holes: the holes of the regions become polygons of the exclusion group (the label map's name
for label ``-1``, else CAMELYON's ``_2``), minus the regions of the other classes (cut into hole-free
pieces where another class lies inside a hole), so that reading the file back with the same label
spec (:func:`mrseg.wsi.annotations.load_annotations`) gives the regions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import LineString, Polygon
from shapely.ops import split

from mrseg.core.label_spec import EXCLUDE, LabelSpec
from mrseg.inference.merger import ProbabilityMap
from mrseg.inference.writers.base import WriteJob, Writer, register_writer
from mrseg.inference.writers.geojson import class_polygons
from mrseg.wsi.annotations.asap_xml import write_asap_xml


def exclusion_group(labels: LabelSpec) -> str:
    """The group name the label spec reads as exclusion (label -1); ``_2`` when it has none."""
    return next((name for name, label in labels.label_map.items() if label == EXCLUDE), "_2")


def region_groups(pmap: ProbabilityMap, labels: LabelSpec, slide_mpp: float, threshold: float) -> list[tuple[str, Any]]:
    """``(group, geometry)`` pairs: each class's regions, then their holes (minus other classes) as exclusions."""
    classes, _ = class_polygons(pmap, slide_mpp, threshold)
    regions = {k: shapely.union_all(polygons) if polygons else Polygon() for k, polygons in classes}
    groups: list[tuple[str, Any]] = [(labels.classes[k], geometry) for k, geometry in regions.items()]
    holes = []
    for k, geometry in regions.items():
        others = shapely.union_all([g for j, g in regions.items() if j != k] or [Polygon()])
        for part in shapely.get_parts(geometry):
            holes += [shapely.difference(Polygon(ring), others) for ring in getattr(part, "interiors", [])]
    if holes:
        groups.append((exclusion_group(labels), shapely.MultiPolygon(hole_free(shapely.union_all(holes)))))
    return groups


def hole_free(geometry: Any) -> list[Polygon]:
    """The polygons of ``geometry`` cut into pieces without holes (vertical cuts at integer level-0 x).

    An integer x is never a level-0 pixel centre, so the pieces rasterise to exactly the pixels of the whole.
    """
    out: list[Polygon] = []
    stack = [p for p in shapely.get_parts(geometry) if isinstance(p, Polygon) and p.area > 0]
    while stack:
        part = stack.pop()
        if not part.interiors:
            out.append(part)
            continue
        hx0, _, hx1, _ = part.interiors[0].bounds
        _, y0, _, y1 = part.bounds
        x = round((hx0 + hx1) / 2)
        cut = split(part, LineString([(x, y0 - 1), (x, y1 + 1)]))
        pieces = [p for p in shapely.get_parts(cut) if isinstance(p, Polygon) and p.area > 0]
        if len(pieces) < 2:  # a hole narrower than a pixel: keep the polygon as it is
            out.append(part)
            continue
        stack += pieces
    return out


def write_regions_xml(
    path: str | os.PathLike[str], pmap: ProbabilityMap, labels: LabelSpec, slide_mpp: float, threshold: float
) -> tuple[Path, int]:
    """Write the ASAP XML of :func:`region_groups`; return the path and the number of class polygons."""
    groups = region_groups(pmap, labels, slide_mpp, threshold)
    colors = {labels.classes[k]: "#{:02X}{:02X}{:02X}".format(*labels.color(k)) for k in range(1, labels.num_classes)}
    write_asap_xml(path, groups, group_colors=colors, annotation_colors=colors)
    polygons = sum(len(shapely.get_parts(g)) for name, g in groups if name in colors and not g.is_empty)
    return Path(path), polygons


@register_writer
class AsapWriter(Writer):
    """``<stem>_regions.xml``; reports ``polygons`` (class regions written)."""

    name = "asap"
    concurrent = True

    def outputs(self, stem: str, labels: LabelSpec) -> dict[str, str]:
        return {"asap": f"{stem}_regions.xml"}

    def write(self, job: WriteJob) -> dict[str, Any]:
        pred = job.prediction
        _, n = write_regions_xml(job.path("asap"), pred.map, job.labels, pred.slide_mpp, job.settings.threshold)
        return {"polygons": n}


__all__ = ["AsapWriter", "exclusion_group", "hole_free", "region_groups", "write_regions_xml"]
