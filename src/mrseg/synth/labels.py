"""Labels of a synthetic slide, drawn from its layout: the binary scheme and the multi-class one.

Both schemes label the same slide (the generator and the pixels do not depend on the scheme):

``binary`` (the default; the CAMELYON16 layout)
    1 = tumour nests and small foci minus their lumens, 0 = everything else (mimics included).
    ASAP groups ``_0`` (tumour) and ``_2`` (lumens, cut out of the tumour).
``multiclass``
    1 = tumour (nests and foci minus their lumens, as above); 2 = lymphoid: the structures the
    layout draws as lymphoid tissue, i.e. the mimics (germinal-centre-like clusters), their mantle
    rings and the primary follicles, minus lumens; 3 = other tissue: the rest of the tissue
    (parenchyma, fat, vessels, lumens, the gap between a mimic and its ring); 0 = glass.
    ASAP groups ``tumour``, ``lymphoid``, ``other``.

The annotation file and the mask agree by construction: the mask is painted from exactly the
(rounded, level-0 pixel) polygons written to the file, in the reader's precedence (where regions
overlap the higher label wins, :mod:`mrseg.wsi.annotations`). ASAP annotations are single rings
without holes, so tumour and lymphoid regions are written whole (their lumens and gaps are in
"other", which wins over them) and "other", which has holes wherever tumour or lymphoid tissue
lies, is cut into hole-free pieces (:func:`hole_free_parts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import shapely
from shapely.geometry import MultiLineString, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.ops import split

from mrseg.core.errors import ConfigError
from mrseg.synth.layout import SlideLayout
from mrseg.synth.raster import paint

LabelScheme = Literal["binary", "multiclass"]
LABEL_SCHEMES: tuple[LabelScheme, ...] = ("binary", "multiclass")
#: Class names by label value of the multi-class scheme.
MULTICLASS_CLASSES = ("background", "tumour", "lymphoid", "other")
#: Mask value of every ASAP group written (``_2`` regions are cut out: 0).
GROUP_LABELS = {"_0": 1, "_2": 0, "tumour": 1, "lymphoid": 2, "other": 3}
_DECIMALS = 3  # coordinate decimals written to the XML

Groups = list[tuple[str, BaseGeometry]]


def check_labels(labels: str) -> LabelScheme:
    """Return ``labels`` when it is a label scheme, else raise :class:`ConfigError`."""
    if labels not in LABEL_SCHEMES:
        raise ConfigError(f"labels must be one of {', '.join(LABEL_SCHEMES)}, got {labels!r}")
    return labels  # type: ignore[return-value]


def to_pixels(geom: BaseGeometry, mpp: float, decimals: int = _DECIMALS) -> BaseGeometry:
    """Microns -> level-0 pixels, rounded to ``decimals`` (as written to the XML), repaired if needed."""
    out = shapely.transform(geom, lambda c: np.round(c / mpp, decimals))
    return out if out.is_valid else out.buffer(0)


def _rounded(geom: BaseGeometry, decimals: int = _DECIMALS) -> BaseGeometry:
    out = shapely.transform(geom, lambda c: np.round(c, decimals))
    return out if out.is_valid else out.buffer(0)


def hole_free_parts(geom: BaseGeometry) -> list[Polygon]:
    """The polygons of ``geom`` cut into pieces without holes, covering the same area.

    Each polygon with holes is split along one vertical line through a point inside each hole, so
    every hole opens onto a cut; the cut abscissae are rounded to the XML's decimals, so adjacent
    pieces share their cut edges exactly.
    """
    pieces: list[Polygon] = []
    for part in shapely.get_parts(geom):
        if not isinstance(part, Polygon) or part.is_empty:
            continue
        if not part.interiors:
            pieces.append(part)
            continue
        _, y0, _, y1 = part.bounds
        xs = sorted({round(Polygon(ring).representative_point().x, _DECIMALS) for ring in part.interiors})
        cuts = MultiLineString([[(x, y0 - 1.0), (x, y1 + 1.0)] for x in xs])
        for piece in shapely.get_parts(split(part, cuts)):
            rounded = _rounded(piece)
            pieces.extend(p for p in shapely.get_parts(rounded) if isinstance(p, Polygon) and p.area > 0)
    return pieces


def _filled(geoms: Sequence[BaseGeometry]) -> list[Polygon]:
    """Each polygon of ``geoms`` as its exterior ring only (what an ASAP annotation holds)."""
    return [
        Polygon(p.exterior) for g in geoms for p in shapely.get_parts(g) if isinstance(p, Polygon) and not p.is_empty
    ]


def _binary_groups(layout: SlideLayout, mpp: float) -> Groups:
    lesions = layout.of_kind("tumour", "focus")
    positives = [to_pixels(les.polygon, mpp) for les in lesions]
    exclusions = [to_pixels(les.lumen, mpp) for les in lesions if les.lumen is not None]
    return [("_0", g) for g in positives] + [("_2", g) for g in exclusions]


def _multiclass_groups(layout: SlideLayout, mpp: float) -> Groups:
    tumour = [to_pixels(les.polygon, mpp) for les in layout.of_kind("tumour", "focus")]
    mimics = layout.of_kind("mimic")
    structures = [m.polygon for m in mimics] + [m.ring for m in mimics if m.ring is not None] + layout.follicles
    lymphoid = [to_pixels(g, mpp) for g in structures]
    lumens = shapely.union_all([to_pixels(les.lumen, mpp) for les in layout.lesions if les.lumen is not None])
    tumour_region = shapely.union_all(tumour).difference(lumens)
    lymphoid_region = shapely.union_all(lymphoid).difference(lumens)
    other = to_pixels(layout.tissue, mpp).difference(tumour_region).difference(lymphoid_region)
    return (
        [("tumour", g) for g in _filled(tumour)]
        + [("lymphoid", g) for g in _filled(lymphoid)]
        + [("other", g) for g in hole_free_parts(other)]
    )


def annotation_groups(layout: SlideLayout, mpp: float, labels: LabelScheme = "binary") -> Groups:
    """``(ASAP group, polygon in level-0 pixels)`` pairs of a slide, in the order they are written and painted."""
    return _multiclass_groups(layout, mpp) if check_labels(labels) == "multiclass" else _binary_groups(layout, mpp)


def paint_groups(groups: Groups, size_px: tuple[int, int]) -> np.ndarray:
    """The level-0 label mask ``uint8 (H, W)`` of annotation groups, painted in order (:data:`GROUP_LABELS`)."""
    width, height = size_px
    mask = np.zeros((height, width), dtype=np.uint8)
    for group, geom in groups:
        paint(mask, geom, GROUP_LABELS[group])
    return mask


def label_mask(layout: SlideLayout, size_px: tuple[int, int], mpp: float, labels: LabelScheme = "binary") -> np.ndarray:
    """The level-0 label mask ``uint8 (H, W)`` of a slide (values of the ``labels`` scheme, see the module docstring).

    Drawn from the same rounded pixel-frame polygons that are written to the annotation file.
    """
    return paint_groups(annotation_groups(layout, mpp, labels), size_px)


def scheme_record(labels: LabelScheme) -> dict[str, Any]:
    """What ``synth.json`` records of a multi-class scheme: class names, mask values and ASAP groups."""
    return {
        "scheme": labels,
        "classes": list(MULTICLASS_CLASSES),
        "groups": {name: value for name, value in GROUP_LABELS.items() if name in MULTICLASS_CLASSES},
    }
