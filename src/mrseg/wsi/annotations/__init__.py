"""Annotations of whole-slide images -> label masks at any mpp.

Readers (ASAP XML, GeoJSON, label-mask images) give :class:`Annotations` in level-0 pixel
coordinates; :meth:`Annotations.rasterize` returns the label mask of any read request
``(box_l0, size_px)`` on exactly the grid of ``Slide.read_box`` (see ``docs/annotations.md``).

Example
-------
>>> ann = load_annotations("test_046.xml")                       # doctest: +SKIP
>>> mask = ann.rasterize((54000, 18000, 56000, 20000), (500, 500))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from mrseg.core.errors import AnnotationError
from mrseg.wsi.annotations.base import (
    DEFAULT_LABEL_MAP,
    EXCLUDE,
    Annotations,
    LabelStats,
    normalise_label_map,
    rasterize,
)
from mrseg.wsi.annotations.maskimage import MaskAnnotations
from mrseg.wsi.annotations.readers import read_asap_xml, read_geojson
from mrseg.wsi.annotations.vector import Region, VectorAnnotations, make_polygon
from mrseg.wsi.geometry import Size
from mrseg.wsi.tiff import TIFF_MAGIC

log = logging.getLogger(__name__)

_MASK_SUFFIXES = {".tif", ".tiff", ".png"}


def sniff_format(path: Path) -> str:
    """Return ``"asap"``, ``"geojson"`` or ``"mask"`` from the file's first bytes, else its extension.

    Raises
    ------
    AnnotationError
        When the file is missing or neither content nor extension identify a supported format.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError as error:
        raise AnnotationError(f"{path}: cannot read annotation file: {error.strerror or error}") from None
    if head.startswith(TIFF_MAGIC) or head.startswith(b"\x89PNG"):
        return "mask"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        return "asap"
    if text.startswith((b"{", b"[")):
        return "geojson"
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return "asap"
    if suffix in {".json", ".geojson"}:
        return "geojson"
    if suffix in _MASK_SUFFIXES:
        return "mask"
    raise AnnotationError(f"{path}: unknown annotation format (expected ASAP XML, GeoJSON, or a TIFF/PNG mask)")


def load_annotations(
    path: str | os.PathLike[str],
    *,
    slide_dimensions: Size | None = None,
    label_map: Mapping[str, int] | None = None,
    default_label: int | None = 1,
) -> Annotations:
    """Read an annotation file, choosing the reader from its content (then its extension).

    Parameters
    ----------
    path
        ASAP XML, GeoJSON, or a label mask image (TIFF, pyramidal TIFF, PNG).
    slide_dimensions
        ``(width, height)`` of the slide's level 0 in pixels. Mask images need it to know their
        scale (without it a mask is taken to be at level 0); vector files ignore it.
    label_map
        Vector files: group/class name (case-insensitive) -> label, ``-1`` (:data:`EXCLUDE`) for
        regions cut out of the positives; default :data:`DEFAULT_LABEL_MAP` (CAMELYON groups).
        Mask images: pixel value (as a string or int, e.g. ``{"255": 1}``) -> label.
    default_label
        Vector files: label of annotations whose group/class is missing or not in ``label_map``
        (a warning names each such class once); None skips them.

    Returns
    -------
    Annotations
        :class:`VectorAnnotations` (``kind`` ``"asap"``/``"geojson"``) or :class:`MaskAnnotations`.
    """
    path = Path(path)
    fmt = sniff_format(path)
    if fmt == "mask":
        try:
            value_map = {int(k): int(v) for k, v in (label_map or {}).items()}
        except (TypeError, ValueError):
            raise AnnotationError(
                f"{path}: a mask's label map maps pixel values to labels, got {label_map!r}"
            ) from None
        return MaskAnnotations(path, slide_dimensions=slide_dimensions, value_map=value_map)
    labels = _checked_label_map(label_map)
    if default_label is not None and not 0 <= default_label <= 255 and default_label != EXCLUDE:
        raise ValueError(f"default_label must be in [-1, 255] or None, got {default_label!r}")
    if fmt == "asap":
        regions = read_asap_xml(path, labels, default_label)
    else:
        regions = read_geojson(path, labels, default_label)
    ann = VectorAnnotations(regions, path=path, kind=fmt)
    log.debug("%s: %d annotation(s), labels %s", path.name, len(regions), ann.labels)
    return ann


def _checked_label_map(label_map: Mapping[str, int] | None) -> dict[str, int]:
    try:
        return normalise_label_map(label_map)
    except (TypeError, ValueError) as error:
        raise AnnotationError(f"invalid label map: {error}") from None


__all__ = [
    "DEFAULT_LABEL_MAP",
    "EXCLUDE",
    "AnnotationError",
    "Annotations",
    "LabelStats",
    "MaskAnnotations",
    "Region",
    "VectorAnnotations",
    "load_annotations",
    "make_polygon",
    "rasterize",
    "sniff_format",
]
