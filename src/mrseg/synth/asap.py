"""ASAP XML of the synthetic slides (the CAMELYON16/17 annotation format), by :mod:`mrseg.wsi.annotations.asap_xml`.

Coordinates are level-0 pixels in the continuous frame of ``docs/architecture.md`` (pixel ``(i, j)``
covers ``[i, i+1) x [j, j+1)``). Binary labels: positive regions go to group ``_0``, regions cut out
of them (lumens inside tumour nests) to group ``_2``, as in CAMELYON. Multi-class labels: groups
``tumour``, ``lymphoid`` and ``other``, coloured as the label spec's palette (:mod:`mrseg.synth.labels`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from shapely.geometry.base import BaseGeometry

from mrseg.core.label_spec import PALETTE
from mrseg.wsi.annotations import asap_xml

GROUP_COLOURS = {
    "_0": "#FF0000",
    "_1": "#00A000",
    "_2": "#0000FF",
    **{name: "#{:02X}{:02X}{:02X}".format(*PALETTE[i]) for i, name in enumerate(("tumour", "lymphoid", "other"), 1)},
}


def write_asap_xml(
    path: str | os.PathLike[str],
    groups: Sequence[tuple[str, BaseGeometry]],
    *,
    decimals: int = 3,
) -> Path:
    """Write ``(group name, geometry)`` polygons as ASAP XML in :data:`GROUP_COLOURS` (see
    :func:`mrseg.wsi.annotations.asap_xml.write_asap_xml`)."""
    return asap_xml.write_asap_xml(path, groups, group_colors=GROUP_COLOURS, decimals=decimals)
