"""ASAP XML writer (the CAMELYON16/17 annotation format).

Layout written::

    <ASAP_Annotations>
      <Annotations>
        <Annotation Name="Annotation 0" Type="Polygon" PartOfGroup="_0" Color="#F4FA58">
          <Coordinates><Coordinate Order="0" X="..." Y="..."/>...</Coordinates>
        </Annotation>
      </Annotations>
      <AnnotationGroups><Group Name="_0" PartOfGroup="None" Color="#FF0000"><Attributes/></Group>...
    </ASAP_Annotations>

Coordinates are level-0 pixels in the continuous frame of ``docs/architecture.md`` (pixel ``(i, j)``
covers ``[i, i+1) x [j, j+1)``). Binary labels: positive regions go to group ``_0``, regions cut out
of them (lumens inside tumour nests) to group ``_2``, as in CAMELYON. Multi-class labels: groups
``tumour``, ``lymphoid`` and ``other``, coloured as the label spec's palette (:mod:`mrseg.synth.labels`).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from mrseg.core.atomic import atomic_path
from mrseg.core.label_spec import PALETTE

GROUP_COLOURS = {
    "_0": "#FF0000",
    "_1": "#00A000",
    "_2": "#0000FF",
    **{name: "#{:02X}{:02X}{:02X}".format(*PALETTE[i]) for i, name in enumerate(("tumour", "lymphoid", "other"), 1)},
}


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
    decimals
        Decimals kept for coordinates (the caller should round its geometry the same way so that
        masks drawn from it and from the file agree exactly).
    """
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
                Color="#F4FA58",
            )
            coords = ET.SubElement(ann, "Coordinates")
            for order, (x, y) in enumerate(ring):
                ET.SubElement(coords, "Coordinate", Order=str(order), X=f"{x:.{decimals}f}", Y=f"{y:.{decimals}f}")
            index += 1
        if group not in used:
            used.append(group)
    group_el = ET.SubElement(root, "AnnotationGroups")
    for group in used:
        g = ET.SubElement(group_el, "Group", Name=group, PartOfGroup="None", Color=GROUP_COLOURS.get(group, "#64FE2E"))
        ET.SubElement(g, "Attributes")
    ET.indent(root)
    path = Path(path)
    with atomic_path(path) as tmp:
        ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
    return path
