"""The :class:`Annotations` interface and the label conventions shared by all readers."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mrseg.core.label_spec import DEFAULT_LABEL_MAP, EXCLUDE, normalise_label_map
from mrseg.wsi.geometry import Box, ReadGrid


@dataclass(frozen=True)
class LabelStats:
    """Summary of one label: number of annotations (vector kinds; None for masks) and level-0 area."""

    label: int
    count: int | None
    area_l0: float
    groups: tuple[str, ...] = field(default=())


class Annotations(abc.ABC):
    """Labelled regions of one slide in level-0 pixel coordinates.

    Labels are ``uint8`` values: 0 is background, positive values are classes (1 = tumour in the
    CAMELYON convention). Where regions overlap the higher label wins and exclusion regions win
    over every positive label (they become 0).
    """

    kind: str
    """Reader that produced the annotations: ``"asap"``, ``"geojson"``, ``"mask"`` or ``"memory"``."""
    path: Path | None

    @property
    @abc.abstractmethod
    def labels(self) -> tuple[int, ...]:
        """Positive labels present (sorted), after exclusions."""

    @property
    @abc.abstractmethod
    def bounds_l0(self) -> Box | None:
        """Bounding box ``(x0, y0, x1, y1)`` of all labelled regions in level-0 pixels (None when empty)."""

    @abc.abstractmethod
    def rasterize(self, box_l0: Sequence[float] | ReadGrid, size_px: Sequence[int] | None = None) -> np.ndarray:
        """Label mask ``uint8 (height, width)`` of the request ``(box_l0, size_px)`` or a :class:`ReadGrid`.

        Output pixel ``(u, v)`` is centred at level-0 ``(x0 + (u + 0.5) * sx, y0 + (v + 0.5) * sy)``
        with ``sx = (x1 - x0) / width``, ``sy = (y1 - y0) / height`` — the grid of ``Slide.read_box``
        — so image and mask of one request are pixel-aligned. Areas outside the slide are 0.
        """

    @abc.abstractmethod
    def area_l0(self, label: int) -> float:
        """Area of the regions of ``label`` in level-0 pixels squared (after exclusions and precedence)."""

    @abc.abstractmethod
    def sample_points(self, label: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` level-0 points ``float64 (n, 2)`` of ``(x, y)``, uniform by area inside ``label``.

        Raises
        ------
        mrseg.core.errors.AnnotationError
            When there is no region of ``label``.
        """

    @abc.abstractmethod
    def label_stats(self) -> list[LabelStats]:
        """Per-label summary (counts, areas) for reports and the CLI."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release open files (mask images); a no-op for vector annotations."""

    def __enter__(self) -> Annotations:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        """One-line description naming the file."""
        return f"{self.kind} annotations from {self.path}" if self.path else f"{self.kind} annotations"


def rasterize(
    annotations: Annotations, box_l0: Sequence[float] | ReadGrid, size_px: Sequence[int] | None = None
) -> np.ndarray:
    """Label mask of a request; the same as ``annotations.rasterize(box_l0, size_px)``."""
    return annotations.rasterize(box_l0, size_px)


__all__ = ["DEFAULT_LABEL_MAP", "EXCLUDE", "Annotations", "LabelStats", "normalise_label_map", "rasterize"]
