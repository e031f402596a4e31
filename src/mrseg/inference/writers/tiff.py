"""Pyramidal TIFF outputs: the probability maps (``tiff``) and the label map of multi-class tasks (``labels``).

- ``<stem>.tif`` (key ``map``): the foreground probability (the one class of a binary task,
  ``1 - P(background)`` otherwise), pyramidal tiled TIFF (zlib, 256-px tiles), ``uint8`` =
  probability x 255 (OpenSlide, QuPath and tiffslide open it; the mpp is stored in the resolution
  tags) or ``float16`` probabilities (for analysis with tifffile; OpenSlide-based viewers cannot
  decode float samples). Reduced levels are 2x2 means.
- ``<stem>_class<k>.tif`` (keys ``class<k>``, multi-class only): the probability of class ``k``.
- ``<stem>_labels.tif`` (key ``labels``, multi-class only): ``uint8`` label map, the most probable
  class per map pixel (0 = background, ``k`` = class ``k`` of the label spec); reduced levels take
  the top-left pixel of each 2x2 block (nearest), never a mean of labels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mrseg.core.encoding import ProbabilityEncoding
from mrseg.core.label_spec import LabelSpec
from mrseg.inference.writers.base import WriteJob, Writer, register_writer
from mrseg.wsi.tiff import write_pyramidal_tiff


def write_probability_tiff(path: str | os.PathLike[str], map_array: Any, mpp: float) -> Path:
    """Write one probability map (``uint8`` or ``float16`` ``(H, W)`` array-like) as a pyramidal TIFF at ``mpp``."""
    return write_pyramidal_tiff(
        path,
        map_array,
        mpp,
        tile=256,
        compression="zlib",
        downsample="mean",
        description=ProbabilityEncoding.of(map_array.dtype).description,
    )


def write_label_tiff(path: str | os.PathLike[str], labels_array: Any, mpp: float, labels: LabelSpec) -> Path:
    """Write a ``uint8 (H, W)`` label map as a pyramidal TIFF at ``mpp`` (nearest-reduced levels)."""
    legend = ", ".join(f"{k} {name}" for k, name in enumerate(labels.classes))
    return write_pyramidal_tiff(
        path,
        labels_array,
        mpp,
        tile=256,
        compression="zlib",
        downsample="nearest",
        description=f"mrseg label map (uint8: {legend})",
    )


@register_writer
class ProbabilityTiffWriter(Writer):
    """``<stem>.tif`` and, for multi-class tasks, ``<stem>_class<k>.tif``."""

    name = "tiff"
    concurrent = True

    def outputs(self, stem: str, labels: LabelSpec) -> dict[str, str]:
        names = {"map": f"{stem}.tif"}
        if not labels.is_binary:
            names.update({f"class{k}": f"{stem}_class{k}.tif" for k in range(1, labels.num_classes)})
        return names

    def write(self, job: WriteJob) -> dict[str, Any]:
        pmap = job.prediction.map
        write_probability_tiff(job.path("map"), pmap.foreground(), pmap.mpp)
        if not job.labels.is_binary:
            for k, channel in enumerate(pmap.channels, start=1):
                write_probability_tiff(job.path(f"class{k}"), channel, pmap.mpp)
        return {}


@register_writer
class LabelTiffWriter(Writer):
    """``<stem>_labels.tif`` for multi-class tasks (nothing for binary ones)."""

    name = "labels"
    concurrent = True

    def outputs(self, stem: str, labels: LabelSpec) -> dict[str, str]:
        return {} if labels.is_binary else {"labels": f"{stem}_labels.tif"}

    def write(self, job: WriteJob) -> dict[str, Any]:
        pmap = job.prediction.map
        write_label_tiff(job.path("labels"), pmap.labels(), pmap.mpp, job.labels)
        return {}


__all__ = ["LabelTiffWriter", "ProbabilityTiffWriter", "write_label_tiff", "write_probability_tiff"]
