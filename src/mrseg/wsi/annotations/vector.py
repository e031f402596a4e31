"""Vector annotations: labelled shapely polygons in level-0 pixels, with exclusions and precedence."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.strtree import STRtree

from mrseg.core.errors import AnnotationError
from mrseg.wsi.annotations.base import EXCLUDE, Annotations, LabelStats
from mrseg.wsi.annotations.raster import fill_edges, ring_edges
from mrseg.wsi.geometry import Box, ReadGrid, to_grid

log = logging.getLogger(__name__)

_MAX_SAMPLE_ROUNDS = 200


@dataclass(frozen=True)
class Region:
    """One annotation as read from a file.

    Attributes
    ----------
    geometry
        Valid ``Polygon`` or ``MultiPolygon`` in level-0 pixels (holes kept).
    label
        Class label (> 0 positive, 0 background, :data:`EXCLUDE` = cut out of positives).
    name
        Annotation name (ASAP ``Name``, GeoJSON ``properties.name`` or ``#index``).
    group
        Group or class name as written in the file (ASAP ``PartOfGroup``, QuPath class); "" when absent.
    """

    geometry: Polygon | MultiPolygon
    label: int
    name: str
    group: str = ""


def make_polygon(
    shell: Sequence[Sequence[float]] | np.ndarray,
    holes: Iterable[Sequence[Sequence[float]] | np.ndarray] = (),
    *,
    where: str,
) -> Polygon | MultiPolygon | None:
    """Build a valid polygon from vertex lists, repairing or rejecting bad input with a warning.

    Parameters
    ----------
    shell, holes
        ``(k, 2)`` vertex sequences ``(x, y)`` in level-0 pixels.
    where
        Names the annotation in warnings (file and annotation name/index).

    Returns
    -------
    A valid polygonal geometry with positive area, or None when the input cannot be used
    (non-finite coordinates, fewer than 3 distinct vertices, zero area after repair).
    """
    try:
        shell_xy = np.asarray(shell, dtype=np.float64)
        holes_xy = [np.asarray(h, dtype=np.float64) for h in holes]
    except (TypeError, ValueError) as error:
        log.warning("%s: skipped, coordinates are not numbers (%s)", where, error)
        return None
    for ring in (shell_xy, *holes_xy):
        if ring.ndim != 2 or ring.shape[1] < 2:
            log.warning("%s: skipped, coordinates are not a list of (x, y) pairs", where)
            return None
        if not np.isfinite(ring[:, :2]).all():
            log.warning("%s: skipped, coordinates contain NaN or infinity", where)
            return None
    if len(np.unique(shell_xy[:, :2], axis=0)) < 3:
        log.warning("%s: skipped, fewer than 3 distinct vertices", where)
        return None
    good_holes = [h[:, :2] for h in holes_xy if len(np.unique(h[:, :2], axis=0)) >= 3]
    if len(good_holes) != len(holes_xy):
        log.warning("%s: dropped %d degenerate hole(s)", where, len(holes_xy) - len(good_holes))
    geom: BaseGeometry = Polygon(shell_xy[:, :2], good_holes)
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        geom = _polygonal(shapely.make_valid(geom))
        if geom.is_empty or geom.area <= 0:
            log.warning("%s: skipped, invalid polygon (%s) has no area after repair", where, reason)
            return None
        log.warning("%s: repaired invalid polygon (%s)", where, reason)
    if geom.area <= 0:
        log.warning("%s: skipped, polygon has zero area", where)
        return None
    assert isinstance(geom, Polygon | MultiPolygon)
    return geom


def _polygonal(geom: BaseGeometry) -> Polygon | MultiPolygon:
    """Keep only the polygonal parts of a geometry (make_valid may add lines and points)."""
    parts = [g for g in shapely.get_parts(geom) if isinstance(g, Polygon | MultiPolygon) and not g.is_empty]
    if not parts:
        return Polygon()
    merged = shapely.union_all(parts)
    return merged if isinstance(merged, Polygon | MultiPolygon) else _polygonal(merged)


def _rings(poly: Polygon) -> list[np.ndarray]:
    return [np.asarray(poly.exterior.coords)] + [np.asarray(r.coords) for r in poly.interiors]


class VectorAnnotations(Annotations):
    """Annotations held as shapely polygons (ASAP XML, GeoJSON, or built in memory).

    Parameters
    ----------
    regions
        The annotations as read; labels > 0 are classes, :data:`EXCLUDE` regions are cut out.
    path
        Source file (for messages), if any.
    kind
        ``"asap"``, ``"geojson"`` or ``"memory"``.
    """

    def __init__(self, regions: Iterable[Region], *, path: Path | None = None, kind: str = "memory") -> None:
        self.regions: tuple[Region, ...] = tuple(regions)
        self.path = path
        self.kind = kind

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state.pop("_index", None)  # the spatial index and samplers are rebuilt on demand
        state.pop("_samplers", None)
        return state

    @cached_property
    def geometries(self) -> dict[int, MultiPolygon]:
        """Effective region of each positive label in level-0 pixels, after exclusions and precedence.

        The regions are disjoint: a label's region is the union of its annotations minus the union
        of exclusion annotations and minus the regions of every higher label.
        """
        by_label: dict[int, list[BaseGeometry]] = {}
        for region in self.regions:
            by_label.setdefault(region.label, []).append(region.geometry)
        cut = shapely.union_all(by_label.get(EXCLUDE, []))
        out: dict[int, MultiPolygon] = {}
        for label in sorted((lab for lab in by_label if lab > 0), reverse=True):
            union = _polygonal(shapely.difference(shapely.union_all(by_label[label]), cut))
            if not union.is_empty and union.area > 0:
                out[label] = union if isinstance(union, MultiPolygon) else MultiPolygon([union])
            cut = shapely.union(cut, union)
        return dict(sorted(out.items()))

    @cached_property
    def _index(self) -> tuple[list[np.ndarray], np.ndarray, STRtree]:
        """Edges of every part of every label's region, the part labels, and a spatial index."""
        parts: list[Polygon] = []
        labels: list[int] = []
        for label, geom in self.geometries.items():
            for part in geom.geoms:
                parts.append(part)
                labels.append(label)
        edges = [ring_edges(_rings(part)) for part in parts]
        return edges, np.asarray(labels, dtype=np.int64), STRtree(parts)

    @property
    def labels(self) -> tuple[int, ...]:
        return tuple(self.geometries)

    @property
    def bounds_l0(self) -> Box | None:
        geoms = [r.geometry for r in self.regions if r.label > 0]
        if not geoms:
            return None
        x0, y0, x1, y1 = shapely.total_bounds(geoms)
        return (float(x0), float(y0), float(x1), float(y1))

    def rasterize(self, box_l0: Sequence[float] | ReadGrid, size_px: Sequence[int] | None = None) -> np.ndarray:
        grid = to_grid(box_l0, size_px)
        out = np.zeros(grid.shape, dtype=np.uint8)
        edges, labels, tree = self._index
        if not edges:
            return out
        hits = tree.query(shapely.box(*grid.box_l0))
        for label in np.unique(labels[hits]):
            label_edges = np.concatenate([edges[i] for i in hits[labels[hits] == label]])
            out[fill_edges(label_edges, grid)] = label
        return out

    def area_l0(self, label: int) -> float:
        geom = self.geometries.get(int(label))
        return float(geom.area) if geom is not None else 0.0

    def sample_points(self, label: int, n: int, rng: np.random.Generator) -> np.ndarray:
        geom = self.geometries.get(int(label))
        if geom is None:
            raise AnnotationError(f"{self.describe()}: no region with label {label} (labels: {list(self.labels)})")
        if n <= 0:
            return np.zeros((0, 2), dtype=np.float64)
        parts, bounds, prob = self._sampler(int(label))
        # Proposal: a part chosen by bounding-box area, a point uniform in its box; accepting only
        # points inside the chosen part gives points uniform over the (disjoint) union.
        accepted: list[np.ndarray] = []
        missing = n
        for _ in range(_MAX_SAMPLE_ROUNDS):
            m = max(2 * missing, 16)
            which = rng.choice(len(parts), size=m, p=prob)
            b = bounds[which]
            pts = b[:, :2] + rng.random((m, 2)) * (b[:, 2:] - b[:, :2])
            inside = np.zeros(m, dtype=bool)
            for i in np.unique(which):
                sel = which == i
                inside[sel] = shapely.contains_xy(parts[i], pts[sel, 0], pts[sel, 1])
            accepted.append(pts[inside][:missing])
            missing -= len(accepted[-1])
            if missing == 0:
                return np.concatenate(accepted)
        raise AnnotationError(f"{self.describe()}: could not sample points in label {label} (degenerate regions?)")

    def _sampler(self, label: int) -> tuple[list[Polygon], np.ndarray, np.ndarray]:
        """Prepared parts of a label's region, their bounds ``(k, 4)`` and proposal probabilities (cached)."""
        cache: dict[int, tuple[list[Polygon], np.ndarray, np.ndarray]] = self.__dict__.setdefault("_samplers", {})
        if label not in cache:
            parts = list(self.geometries[label].geoms)
            bounds = shapely.bounds(parts)
            box_area = (bounds[:, 2] - bounds[:, 0]) * (bounds[:, 3] - bounds[:, 1])
            for part in parts:
                shapely.prepare(part)
            cache[label] = (parts, bounds, box_area / box_area.sum())
        return cache[label]

    def label_stats(self) -> list[LabelStats]:
        out = []
        for label in sorted({r.label for r in self.regions} | set(self.geometries)):
            members = [r for r in self.regions if r.label == label]
            area = self.area_l0(label) if label > 0 else float(sum(r.geometry.area for r in members))
            groups = tuple(sorted({r.group for r in members if r.group}))
            out.append(LabelStats(label=label, count=len(members), area_l0=area, groups=groups))
        return out
