"""Writing ASAP XML (the CAMELYON16/17 annotation format): polygons by group, with group colours.

Layout written::

    <ASAP_Annotations>
      <Annotations>
        <Annotation Name="Annotation 0" Type="Polygon" PartOfGroup="_0" Color="#F4FA58">
          <Coordinates><Coordinate Order="0" X="..." Y="..."/>...</Coordinates>
        </Annotation>
      </Annotations>
      <AnnotationGroups><Group Name="_0" PartOfGroup="None" Color="#FF0000"><Attributes/></Group>...
    </ASAP_Annotations>

Coordinates are level-0 pixels in the continuous frame of ``docs/architecture.md``. ASAP polygons have
no holes: a hole is written as a polygon of its own group (CAMELYON's ``_2``, which
:func:`~mrseg.wsi.annotations.load_annotations` reads as cut out of the positive regions).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from mrseg.core.atomic import atomic_path

#: Colour of annotations and groups that the caller gives none.
ANNOTATION_COLOR = "#F4FA58"
GROUP_COLOR = "#64FE2E"


def polygon_rings(geom: BaseGeometry) -> list[np.ndarray]:
    """Exterior rings ``(n, 2)`` (without the closing vertex) of every polygon in ``geom``."""
    out = []
    for part in shapely.get_parts(geom):
        if part.geom_type == "Polygon" and not part.is_empty:
            out.append(np.asarray(part.exterior.coords)[:-1])
    return out


def write_asap_xml(
    path: str | os.PathLike[str],
    groups: Sequence[tuple[str, BaseGeometry]],
    *,
    group_colors: Mapping[str, str] | None = None,
    annotation_colors: Mapping[str, str] | None = None,
    decimals: int = 3,
) -> Path:
    """Write polygons as an ASAP XML file, atomically.

    Parameters
    ----------
    path
        Destination ``.xml``.
    groups
        ``(group name, geometry)`` pairs; every polygon exterior of the geometry becomes one
        ``Polygon`` annotation of that group (interiors must be given as their own group, e.g. ``_2``).
        Coordinates in level-0 pixels.
    group_colors, annotation_colors
        ``#RRGGBB`` of each group and of its annotations (default :data:`GROUP_COLOR`,
        :data:`ANNOTATION_COLOR`).
    decimals
        Decimals kept for coordinates (the caller should round its geometry the same way so that
        masks drawn from it and from the file agree exactly).
    """
    group_colors, annotation_colors = group_colors or {}, annotation_colors or {}
    root = ET.Element("ASAP_Annotations")
    annotations = ET.SubElement(root, "Annotations")
    index = 0
    used = []
    for group, geom in groups:
        for ring in polygon_rings(geom):
            ann = ET.SubElement(
                annotations,
                "Annotation",
                Name=f"Annotation {index}",
                Type="Polygon",
                PartOfGroup=group,
                Color=annotation_colors.get(group, ANNOTATION_COLOR),
            )
            coords = ET.SubElement(ann, "Coordinates")
            for order, (x, y) in enumerate(ring):
                ET.SubElement(coords, "Coordinate", Order=str(order), X=f"{x:.{decimals}f}", Y=f"{y:.{decimals}f}")
            index += 1
        if group not in used:
            used.append(group)
    group_el = ET.SubElement(root, "AnnotationGroups")
    for group in used:
        g = ET.SubElement(group_el, "Group", Name=group, PartOfGroup="None", Color=group_colors.get(group, GROUP_COLOR))
        ET.SubElement(g, "Attributes")
    ET.indent(root)
    path = Path(path)
    with atomic_path(path) as tmp:
        ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
    return path


__all__ = ["ANNOTATION_COLOR", "GROUP_COLOR", "polygon_rings", "write_asap_xml"]
