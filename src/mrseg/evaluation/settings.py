"""What an evaluation run is asked to do: the evaluation grid, which pixels count, ROC bins, panels.

:class:`EvaluateSettings` is torch-free, so the CLI can take its defaults from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from mrseg.core.errors import ConfigError
from mrseg.core.tissue_spec import DEFAULT_TISSUE_MPP
from mrseg.evaluation.metrics import DEFAULT_BINS

Within = Literal["tissue", "slide"]


@dataclass(frozen=True)
class EvaluateSettings:
    """Settings of :func:`mrseg.evaluation.evaluate.evaluate`.

    Attributes
    ----------
    mpp
        Resolution of the evaluation grid in microns per pixel (``ReadGrid.covering`` of each slide).
    within
        ``"tissue"``: count only pixels inside the slide's tissue mask; ``"slide"``: every pixel.
    bins
        Histogram bins over [0, 1] (the ROC's resolution; >= 2).
    tissue_mpp
        Resolution of the tissue mask (microns per pixel) with ``within="tissue"``.
    panels
        Slide stems to draw a qualitative panel for; None: the first slide.
    panel_max_side
        Longest side of a panel's images in pixels.

    Raises
    ------
    ConfigError
        An unknown ``within``, a non-positive mpp, fewer than two bins or a panel side below 16.
    """

    mpp: float = 2.0
    within: Within = "tissue"
    bins: int = DEFAULT_BINS
    tissue_mpp: float = DEFAULT_TISSUE_MPP
    panels: tuple[str, ...] | None = None
    panel_max_side: int = 768

    def __post_init__(self) -> None:
        if self.within not in ("tissue", "slide"):
            raise ConfigError(f"within must be 'tissue' or 'slide', got {self.within!r}")
        for name in ("mpp", "tissue_mpp"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ConfigError(f"evaluation {name} must be a positive number of µm/px, got {value!r}")
        if int(self.bins) != self.bins or self.bins < 2:
            raise ConfigError(f"bins must be an integer >= 2, got {self.bins!r}")
        if self.panel_max_side < 16:
            raise ConfigError(f"panel_max_side must be at least 16 pixels, got {self.panel_max_side}")
        if self.panels is not None:
            object.__setattr__(self, "panels", tuple(str(p) for p in self.panels))


__all__ = ["EvaluateSettings", "Within"]
