"""Geometry of one synthetic slide, in microns: tissue islands, lesions, their context, other structures.

The layout is drawn before any pixel exists; rendering and label masks are rasterised from it, so
pixels, masks and annotations agree by construction.

Why the labels need context
---------------------------
Tumour nests (label 1) and mimics (label 0) share one radius distribution, one outline model and,
in :mod:`mrseg.synth.render`, one interior texture (the same nucleus layer). What differs lies
*outside* them: a mimic is a germinal-centre-like cluster inside a follicle, surrounded by a mantle
ring of dense small lymphocytes that starts ``mantle_gap_um`` beyond its edge; a tumour nest sits
in ordinary parenchyma with no ring within the same distance (placement keeps follicles and other
mimics away from it). A 32-um field of view inside a lesion cannot see the ring; 128-256-um fields
(2-4 mpp for 64-px patches) can.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.strtree import STRtree

from mrseg.synth.params import SynthParams


@dataclass
class Lesion:
    """A tumour nest, small tumour focus or mimic (microns)."""

    kind: str  # "tumour" | "focus" | "mimic"
    polygon: Polygon
    lumen: Polygon | None = None
    ring: Polygon | None = None  # mantle ring (mimics only)


@dataclass
class SlideLayout:
    """All structures of one slide, in microns (x right, y down, origin at the slide's top-left)."""

    width_um: float
    height_um: float
    has_tumour: bool
    tissue: BaseGeometry
    lesions: list[Lesion] = field(default_factory=list)
    follicles: list[Polygon] = field(default_factory=list)
    fat_lobules: list[Polygon] = field(default_factory=list)
    fat_cells: list[BaseGeometry] = field(default_factory=list)
    vessel_walls: list[BaseGeometry] = field(default_factory=list)
    vessel_lumens: list[BaseGeometry] = field(default_factory=list)

    def of_kind(self, *kinds: str) -> list[Lesion]:
        """Lesions whose kind is one of ``kinds``."""
        return [lesion for lesion in self.lesions if lesion.kind in kinds]

    def tumour_geometry(self) -> BaseGeometry:
        """Union of tumour nests and foci minus their lumens (the label-1 region), microns."""
        parts = [les.polygon for les in self.of_kind("tumour", "focus")]
        geom = shapely.union_all(parts) if parts else Polygon()
        lumens = [les.lumen for les in self.of_kind("tumour", "focus") if les.lumen is not None]
        return geom.difference(shapely.union_all(lumens)) if lumens else geom


def blob(
    rng: np.random.Generator,
    center: tuple[float, float],
    radius: float,
    irregularity: float,
    harmonics: int = 8,
    aspect: float = 1.0,
) -> Polygon:
    """A star-shaped random outline: ``r(t) = radius * (1 + sum_k a_k cos(k t + phi_k))``.

    Parameters are microns; ``irregularity`` scales the harmonic amplitudes (decaying as ``1/k``),
    ``aspect`` >= 1 stretches the shape along a random axis. One vertex per ~2 um of perimeter.
    """
    k = np.arange(2, harmonics + 1)
    amp = irregularity * rng.normal(size=k.size) / k**0.7
    phase = rng.uniform(0, 2 * np.pi, size=k.size)
    n_vertices = int(np.clip(2 * np.pi * radius / 2.0, 32, 720))
    t = np.linspace(0, 2 * np.pi, n_vertices, endpoint=False)
    r = radius * (1 + (amp[:, None] * np.cos(k[:, None] * t + phase[:, None])).sum(axis=0))
    r = np.maximum(r, 0.35 * radius)
    x, y = r * np.cos(t) * aspect, r * np.sin(t) / aspect
    rot = rng.uniform(0, np.pi)
    c, s = math.cos(rot), math.sin(rot)
    poly = Polygon(np.column_stack([center[0] + c * x - s * y, center[1] + s * x + c * y]))
    return poly if poly.is_valid else poly.buffer(0)


def _loguniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


class _Placer:
    """Rejection sampling of non-overlapping structures inside the tissue."""

    def __init__(self, rng: np.random.Generator, tissue: BaseGeometry) -> None:
        self.rng = rng
        self.tissue = tissue
        shapely.prepare(tissue)
        self.bodies: list[tuple[BaseGeometry, str]] = []
        self._tree: STRtree | None = None
        self._boundary = tissue.boundary
        minx, miny, maxx, maxy = tissue.bounds
        self._bounds = (minx, miny, maxx, maxy)

    def random_point(self) -> tuple[float, float] | None:
        minx, miny, maxx, maxy = self._bounds
        for _ in range(20):
            xy = self.rng.uniform((minx, miny), (maxx, maxy), size=(16, 2))
            inside = shapely.contains_xy(self.tissue, xy[:, 0], xy[:, 1])
            if inside.any():
                x, y = xy[np.argmax(inside)]
                return float(x), float(y)
        return None

    def scatter(
        self, density_per_mm2: float, area_um2: float, try_place: Callable[[tuple[float, float]], bool]
    ) -> None:
        """Place a Poisson number of structures (``density_per_mm2`` over ``area_um2`` square microns).

        Each structure gets up to 20 random centres in the tissue (microns); ``try_place(centre)`` draws
        and adds it and says whether it fitted. Stops early when no centre can be found.
        """
        n = self.rng.poisson(density_per_mm2 * area_um2 / 1e6)
        for _ in range(n):
            for _attempt in range(20):
                centre = self.random_point()
                if centre is None:
                    return
                if try_place(centre):
                    break

    def room(self, centre: tuple[float, float], reach: float, body_reach: float, clearance: dict[str, float]) -> bool:
        """Cheap necessary condition for :meth:`fits` of a shape containing discs around ``centre``.

        ``reach``: radius of a disc inside the shape that must lie in the tissue; ``body_reach``:
        radius of a disc inside the body that must keep ``clearance`` from other bodies.
        """
        point = Point(centre)
        if self._boundary.distance(point) < reach:
            return False
        reach = body_reach
        if self._tree is None and self.bodies:
            self._tree = STRtree([b for b, _ in self.bodies])
        if self._tree is not None:
            dmax = reach + max(clearance.values(), default=0.0)
            for index in self._tree.query(point, predicate="dwithin", distance=dmax):
                other, tag = self.bodies[int(index)]
                if tag in clearance and point.distance(other) < reach + clearance[tag]:
                    return False
        return True

    def fits(self, inside: BaseGeometry, body: BaseGeometry, clearance: dict[str, float]) -> bool:
        """``inside`` must lie in the tissue; ``body`` must keep ``clearance[tag]`` um from bodies tagged ``tag``."""
        if not self.tissue.contains(inside):
            return False
        if self._tree is None and self.bodies:
            self._tree = STRtree([b for b, _ in self.bodies])
        if self._tree is not None:
            dmax = max(clearance.values(), default=0.0)
            for index in self._tree.query(body, predicate="dwithin", distance=dmax):
                other, tag = self.bodies[int(index)]
                if tag in clearance and body.distance(other) < clearance[tag]:
                    return False
        return True

    def add(self, body: BaseGeometry, tag: str) -> None:
        self.bodies.append((body, tag))
        self._tree = None


def _tissue(rng: np.random.Generator, width: float, height: float, p: SynthParams) -> BaseGeometry:
    area_mm2 = width * height / 1e6
    n_islands = int(min(6, 1 + rng.poisson(p.island_density_per_mm2 * area_mm2)))
    shares = rng.dirichlet(np.full(n_islands, 2.0)) * 0.5 + 0.5 / n_islands
    frame = box(0.03 * width, 0.03 * height, 0.97 * width, 0.97 * height)
    parts = []
    for share in shares:
        radius = math.sqrt(p.tissue_fraction * width * height * share / math.pi)
        margin = 1.05 * radius
        cx = rng.uniform(min(margin, width / 2), max(width - margin, width / 2))
        cy = rng.uniform(min(margin, height / 2), max(height - margin, height / 2))
        parts.append(blob(rng, (cx, cy), radius, 0.15, harmonics=10, aspect=float(rng.uniform(1.0, 1.4))))
    return shapely.union_all(parts).intersection(frame)


def _place_lesions(placer: _Placer, layout: SlideLayout, p: SynthParams) -> None:
    rng = placer.rng
    tissue_area = layout.tissue.area
    targets = {
        "tumour": p.tumour_area_fraction * tissue_area if layout.has_tumour else 0.0,
        "mimic": p.mimic_area_fraction * tissue_area,
    }
    placed = {"tumour": 0.0, "mimic": 0.0}
    context = p.mantle_gap_um[1] + p.mantle_width_um[1]
    failures = 0
    while failures < 1000:
        open_kinds = [k for k in targets if targets[k] > 0 and placed[k] < targets[k]]
        if not open_kinds:
            break
        kind = min(open_kinds, key=lambda k: placed[k] / targets[k])
        centre = placer.random_point()
        if centre is None:
            break
        radius = _loguniform(rng, p.lesion_radius_um)
        gap = float(rng.uniform(*p.mantle_gap_um))
        width = float(rng.uniform(*p.mantle_width_um))
        clearance = (
            {"lesion": 15.0, "tumour": context, "follicle": 15.0}
            if kind == "mimic"
            else {"lesion": context, "tumour": 30.0, "follicle": context}
        )
        core = 0.6 * radius  # lower bound of the outline's radius
        body_reach = core + gap + width if kind == "mimic" else core
        if not placer.room(centre, core + gap + width, body_reach, clearance):
            failures += 1
            continue
        poly = blob(rng, centre, radius, p.lesion_irregularity, harmonics=10, aspect=float(rng.uniform(1.0, 1.3)))
        # both kinds need their full context annulus inside the tissue (symmetry: no edge cue)
        inside = poly.buffer(gap + width)
        if kind == "mimic":
            ring = poly.buffer(gap + width).difference(poly.buffer(gap))
            body = poly.buffer(gap + width)
            ok = placer.fits(inside, body, clearance)
        else:
            ring = None
            body = poly
            ok = placer.fits(inside, body, clearance)
        if not ok:
            failures += 1
            continue
        lumen = None
        if rng.random() < p.p_lumen and radius > 60:
            off = rng.normal(scale=0.1 * radius, size=2)
            cand = blob(rng, (centre[0] + off[0], centre[1] + off[1]), radius * rng.uniform(0.15, 0.3), 0.1)
            if poly.buffer(-15.0).contains(cand):
                lumen = cand
        layout.lesions.append(Lesion(kind, poly, lumen, ring))
        placer.add(body, "lesion" if kind == "mimic" else "tumour")
        placed[kind] += poly.area


def _place_foci(placer: _Placer, layout: SlideLayout, p: SynthParams) -> None:
    if not layout.has_tumour:
        return
    rng = placer.rng
    context = p.mantle_gap_um[1] + p.mantle_width_um[1]

    def focus(centre: tuple[float, float]) -> bool:
        radius = _loguniform(rng, p.focus_radius_um)
        poly = blob(rng, centre, radius, p.focus_irregularity, harmonics=12, aspect=float(rng.uniform(1.0, 1.6)))
        if not placer.fits(poly.buffer(30.0), poly, {"lesion": context, "tumour": 25.0, "follicle": context}):
            return False
        layout.lesions.append(Lesion("focus", poly))
        placer.add(poly, "tumour")
        return True

    placer.scatter(p.focus_density_per_mm2, layout.tissue.area, focus)


def _place_follicles(placer: _Placer, layout: SlideLayout, p: SynthParams) -> None:
    rng = placer.rng
    context = p.mantle_gap_um[1] + p.mantle_width_um[1]

    def follicle(centre: tuple[float, float]) -> bool:
        poly = blob(rng, centre, _loguniform(rng, p.follicle_radius_um), 0.1, aspect=float(rng.uniform(1, 1.3)))
        if not placer.fits(poly, poly, {"lesion": 15.0, "tumour": context, "follicle": 15.0}):
            return False
        layout.follicles.append(poly)
        placer.add(poly, "follicle")
        return True

    placer.scatter(p.follicle_density_per_mm2, layout.tissue.area, follicle)


def _place_fat(placer: _Placer, layout: SlideLayout, p: SynthParams) -> None:
    rng = placer.rng

    def fat_lobule(centre: tuple[float, float]) -> bool:
        lobule = blob(rng, centre, _loguniform(rng, p.fat_lobule_radius_um), 0.15, aspect=float(rng.uniform(1, 1.5)))
        lobule = lobule.intersection(layout.tissue.buffer(-5.0))
        if lobule.is_empty or lobule.area < 1000 or not placer.fits(Point(centre), lobule, _MISC_CLEARANCE):
            return False
        cell_r = _loguniform(rng, p.fat_cell_radius_um)
        minx, miny, maxx, maxy = lobule.bounds
        gx, gy = np.meshgrid(np.arange(minx, maxx, 1.7 * cell_r), np.arange(miny, maxy, 1.7 * cell_r))
        pts = np.column_stack([gx.ravel(), gy.ravel()]) + rng.uniform(-0.6, 0.6, (gx.size, 2)) * cell_r
        if len(pts) >= 2:
            cells = shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=lobule)
            septum = float(rng.uniform(0.8, 1.5))
            cells = shapely.intersection(lobule, shapely.get_parts(cells)).tolist()
            shrunk = [c.buffer(-septum) for c in cells]
            layout.fat_cells.append(shapely.union_all([c for c in shrunk if not c.is_empty]))
        layout.fat_lobules.append(lobule)
        placer.add(lobule, "misc")
        return True

    placer.scatter(p.fat_density_per_mm2, layout.tissue.area, fat_lobule)


_MISC_CLEARANCE = {"lesion": 30.0, "tumour": 30.0, "follicle": 10.0, "misc": 10.0}


def _place_vessels(placer: _Placer, layout: SlideLayout, p: SynthParams) -> None:
    rng = placer.rng

    def vessel(start: tuple[float, float]) -> bool:
        length = _loguniform(rng, p.vessel_length_um)
        steps = max(2, int(length / 10.0))
        heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(scale=0.08, size=steps))
        xy = np.asarray(start) + np.cumsum(10.0 * np.column_stack([np.cos(heading), np.sin(heading)]), axis=0)
        line = LineString(np.vstack([start, xy]))
        radius = _loguniform(rng, p.vessel_radius_um)
        wall = float(rng.uniform(*p.vessel_wall_um))
        outer = line.buffer(radius + wall).intersection(layout.tissue.buffer(-2.0))
        if outer.is_empty or not placer.fits(Point(start), outer, _MISC_CLEARANCE):
            return False
        lumen = line.buffer(radius).intersection(outer)
        layout.vessel_walls.append(outer.difference(lumen))
        layout.vessel_lumens.append(lumen)
        placer.add(outer, "misc")
        return True

    placer.scatter(p.vessel_density_per_mm2, layout.tissue.area, vessel)


def make_layout(rng: np.random.Generator, width_um: float, height_um: float, params: SynthParams) -> SlideLayout:
    """Draw the geometry of one slide of ``width_um x height_um`` microns.

    Structures are placed by density per mm^2 of tissue (not fixed counts), so small slides get few
    and large slides many. Whether the slide may have tumour is the first draw from ``rng``;
    ``has_tumour`` finally says whether any tumour was placed.
    """
    has_tumour = bool(rng.random() >= params.p_tumour_free)
    tissue = _tissue(rng, width_um, height_um, params)
    if isinstance(tissue, Polygon):
        tissue = MultiPolygon([tissue])
    layout = SlideLayout(width_um, height_um, has_tumour, tissue)
    placer = _Placer(rng, tissue)
    _place_lesions(placer, layout, params)
    _place_foci(placer, layout, params)
    _place_follicles(placer, layout, params)
    _place_fat(placer, layout, params)
    _place_vessels(placer, layout, params)
    layout.has_tumour = bool(layout.of_kind("tumour", "focus"))  # none may have fitted on a tiny slide
    return layout
