"""Readers of vector annotation files: ASAP XML (CAMELYON16/17) and GeoJSON (QuPath).

Both return :class:`~mrseg.wsi.annotations.vector.Region` lists in level-0 pixel coordinates.
File-level problems (not XML/JSON, unsafe XML, wrong structure) raise
:class:`~mrseg.core.errors.AnnotationError`; a single bad annotation is repaired or skipped with a
warning naming the file and the annotation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree as SafeET

from mrseg.core.errors import AnnotationError
from mrseg.wsi.annotations.base import EXCLUDE
from mrseg.wsi.annotations.vector import Region, make_polygon

log = logging.getLogger(__name__)

POLYGON_TYPES = frozenset({"polygon", "spline", "rectangle"})
"""ASAP annotation types read as polygons (splines: control points joined by straight lines)."""


class _Labeller:
    """Maps group/class names to labels; unknown or missing names get ``default_label`` (warned once)."""

    def __init__(self, label_map: Mapping[str, int], default_label: int | None, source: Path) -> None:
        self.label_map = label_map
        self.default_label = default_label
        self.source = source
        self._warned: set[str] = set()

    def __call__(self, name: str | None) -> int | None:
        if name is not None and name.casefold() in self.label_map:
            return self.label_map[name.casefold()]
        key = name or ""
        if key not in self._warned:
            self._warned.add(key)
            what = f"group/class {name!r} is not in the label map" if name else "annotation(s) without a class"
            action = f"using default label {self.default_label}" if self.default_label is not None else "skipped"
            log.warning("%s: %s; %s", self.source.name, what, action)
        return self.default_label


# ----------------------------------------------------------------------------------------------- ASAP
def read_asap_xml(path: Path, label_map: Mapping[str, int], default_label: int | None = 1) -> list[Region]:
    """Read an ASAP XML file (CAMELYON16/17 ground truth).

    Structure: ``ASAP_Annotations/Annotations/Annotation[@Name, @Type, @PartOfGroup]/Coordinates/
    Coordinate[@Order, @X, @Y]``. Types ``Polygon``, ``Spline`` and ``Rectangle`` become polygons with
    the vertices sorted by ``Order``; a ``Spline`` is read as the polygon of its control points, as the
    CAMELYON reference masks were made; ``Dot``/``PointSet``/other types are ignored (logged).
    Decimal commas (``"123,5"``) are accepted.

    Raises
    ------
    AnnotationError
        Not well-formed XML, unsafe XML (entity declarations, external references), or a root other
        than ``ASAP_Annotations``.
    """
    root = _parse_xml(path)
    if root.tag != "ASAP_Annotations":
        raise AnnotationError(f"{path}: not an ASAP annotation file (root element <{root.tag}>)")
    labeller = _Labeller(label_map, default_label, path)
    regions: list[Region] = []
    ignored: dict[str, int] = {}
    for index, ann in enumerate(root.iter("Annotation")):
        name = ann.get("Name") or f"#{index}"
        kind = (ann.get("Type") or "Polygon").strip()
        where = f"{path.name}: annotation {name!r} (#{index})"
        if kind.casefold() not in POLYGON_TYPES:
            ignored[kind] = ignored.get(kind, 0) + 1
            continue
        group = ann.get("PartOfGroup") or ""
        label = labeller(group or None)
        if label is None:
            continue
        try:
            vertices = _asap_vertices(ann)
        except ValueError as error:
            log.warning("%s: skipped, %s", where, error)
            continue
        if kind.casefold() == "rectangle" and len(vertices) == 2:
            (xa, ya), (xb, yb) = vertices
            vertices = [(xa, ya), (xb, ya), (xb, yb), (xa, yb)]
        geom = make_polygon(vertices, where=where)
        if geom is not None:
            regions.append(Region(geom, label, name, group))
    for kind, count in ignored.items():
        log.info("%s: ignored %d annotation(s) of type %r (not an area)", path.name, count, kind)
    return regions


def _parse_xml(path: Path) -> Element:
    try:
        return SafeET.parse(str(path), forbid_dtd=False, forbid_entities=True, forbid_external=True).getroot()
    except defusedxml.EntitiesForbidden as error:
        raise AnnotationError(f"{path}: refused unsafe XML: entity declaration {error.name!r} (XML bomb?)") from None
    except defusedxml.DefusedXmlException as error:
        raise AnnotationError(f"{path}: refused unsafe XML: {error}") from None
    except ParseError as error:
        raise AnnotationError(f"{path}: malformed XML: {error}") from None


def _number(text: str | None, what: str) -> float:
    if text is None:
        raise ValueError(f"missing {what}")
    text = text.strip()
    if "," in text and "." not in text:
        text = text.replace(",", ".")
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what}={text!r} is not a number") from None


def _asap_vertices(ann: Element) -> list[tuple[float, float]]:
    keyed: list[tuple[float, int, tuple[float, float]]] = []
    for position, coord in enumerate(ann.iter("Coordinate")):
        order = coord.get("Order")
        key = _number(order, "Order") if order is not None else float(position)
        keyed.append((key, position, (_number(coord.get("X"), "X"), _number(coord.get("Y"), "Y"))))
    keyed.sort()
    return [xy for _, _, xy in keyed]


# -------------------------------------------------------------------------------------------- GeoJSON
def read_geojson(path: Path, label_map: Mapping[str, int], default_label: int | None = 1) -> list[Region]:
    """Read a GeoJSON file as exported by QuPath.

    Accepts a ``FeatureCollection``, a single ``Feature``, a bare geometry, a ``GeometryCollection``
    or a JSON list of features/geometries. ``Polygon`` and ``MultiPolygon`` (with holes) are read;
    points and lines are ignored (logged). The class is ``properties.classification.name`` (or a
    string ``classification``); otherwise ``properties.name`` when it is a key of the label map;
    otherwise the annotation has no class and gets ``default_label``.

    Raises
    ------
    AnnotationError
        Not UTF-8 JSON, nested too deeply, not a GeoJSON object/list of the kinds above, or
        area features none of which has valid coordinates.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return _geojson_regions(data, path, label_map, default_label)
    except UnicodeDecodeError as error:
        raise AnnotationError(f"{path}: not UTF-8 text, as GeoJSON must be ({error})") from None
    except json.JSONDecodeError as error:
        raise AnnotationError(f"{path}: malformed JSON: {error}") from None
    except RecursionError:
        raise AnnotationError(f"{path}: GeoJSON nested too deeply to be an annotation file") from None


def _geojson_regions(data: Any, path: Path, label_map: Mapping[str, int], default_label: int | None) -> list[Region]:
    """The regions of a parsed GeoJSON document (see :func:`read_geojson`)."""
    labeller = _Labeller(label_map, default_label, path)
    regions: list[Region] = []
    ignored: dict[str, int] = {}
    invalid: list[str] = []
    for index, (geometry, props) in enumerate(_features(data, path)):
        name = str(props.get("name") or f"#{index}")
        where = f"{path.name}: feature {name!r} (#{index})"
        gtype = geometry.get("type") if isinstance(geometry, dict) else None
        if gtype not in ("Polygon", "MultiPolygon"):
            ignored[str(gtype)] = ignored.get(str(gtype), 0) + 1
            continue
        cls = _class_name(props, labeller.label_map)
        label = labeller(cls)
        if label is None:
            continue
        coords = geometry.get("coordinates")
        polygons = [coords] if gtype == "Polygon" else coords
        if not isinstance(polygons, list) or not all(isinstance(p, list) and p for p in polygons):
            log.warning("%s: skipped, %s without valid coordinates", where, gtype)
            invalid.append(where)
            continue
        for part, rings in enumerate(polygons):
            part_where = where if len(polygons) == 1 else f"{where} part {part}"
            geom = make_polygon(rings[0], rings[1:], where=part_where)
            if geom is not None:
                regions.append(Region(geom, label, name, cls or ""))
            else:
                invalid.append(part_where)
    for gtype, count in ignored.items():
        log.info("%s: ignored %d feature(s) of geometry type %s (not an area)", path.name, count, gtype)
    if invalid and not regions:
        raise AnnotationError(
            f"{path}: no polygon with valid coordinates ({len(invalid)} skipped, the first: {invalid[0]})"
        )
    return regions


def _features(data: Any, path: Path) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Yield ``(geometry, properties)`` for every feature/geometry of a GeoJSON document."""
    items: Any
    if isinstance(data, list):
        items = data
    elif isinstance(data, dict) and data.get("type") == "FeatureCollection":
        items = data.get("features")
        if not isinstance(items, list):
            raise AnnotationError(f"{path}: FeatureCollection without a 'features' list")
    elif isinstance(data, dict) and "type" in data:
        items = [data]
    else:
        raise AnnotationError(f"{path}: not GeoJSON (expected a Feature, FeatureCollection, geometry or list)")
    for position, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise AnnotationError(f"{path}: item #{position} is not a GeoJSON object with a 'type'")
        if item["type"] == "Feature":
            props = item.get("properties") or {}
            if not isinstance(props, dict):
                raise AnnotationError(f"{path}: feature #{position} has non-object 'properties'")
            yield item.get("geometry"), props
        elif item["type"] == "GeometryCollection":
            for geometry in item.get("geometries") or []:
                yield geometry, {}
        elif item["type"] == "FeatureCollection":
            yield from _features(item, path)
        else:
            yield item, {}


def _class_name(props: Mapping[str, Any], label_map: Mapping[str, int]) -> str | None:
    cls = props.get("classification")
    if isinstance(cls, dict) and isinstance(cls.get("name"), str):
        return str(cls["name"])
    if isinstance(cls, str):
        return cls
    name = props.get("name")
    if isinstance(name, str) and name.casefold() in label_map:
        return name
    return None


__all__ = ["EXCLUDE", "POLYGON_TYPES", "read_asap_xml", "read_geojson"]
