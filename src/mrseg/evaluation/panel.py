"""The qualitative panel of one slide (the paper's Fig. 4): H&E thumbnail, ground truth, each model's map."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mrseg.core.prediction_record import PredictionRecord
from mrseg.evaluation.maps import MapReader
from mrseg.evaluation.plots import plot_panel
from mrseg.evaluation.truth import SlideTruth
from mrseg.wsi.geometry import ReadGrid
from mrseg.wsi.slide import Slide

log = logging.getLogger(__name__)


def write_panel(
    out_dir: Path,
    stem: str,
    truth: SlideTruth,
    record: PredictionRecord,
    maps: Mapping[str, MapReader],
    max_side: int,
) -> Path:
    """Draw ``out_dir/panel_<stem>.png`` on the slide's thumbnail grid (longest side about ``max_side`` px).

    The thumbnail is read at ``max(slide_mpp, longest side in µm / max_side)`` µm/px; without the
    slide file the H&E column is white (a warning says so). Truth and maps are sampled on the
    thumbnail's grid, so the columns are pixel-aligned; multi-class truth is drawn in the label
    spec's colours, the maps are the foreground probability.
    """
    w0, h0 = record.slide_dimensions
    panel_mpp = max(record.slide_mpp, max(w0, h0) * record.slide_mpp / max_side)
    thumb = _thumbnail(truth, record, panel_mpp)
    ph, pw = thumb.shape[:2]
    grid = ReadGrid((0.0, 0.0, float(w0), float(h0)), (pw, ph))
    labels = truth.annotations.rasterize(grid)
    probabilities = {name: reader.to_probability(reader.sample(grid)) for name, reader in maps.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    colors = None if record.labels.is_binary else record.labels.colors
    return plot_panel(out_dir / f"panel_{stem}.png", thumb, labels, probabilities, title=stem, label_colors=colors)


def _thumbnail(truth: SlideTruth, record: PredictionRecord, panel_mpp: float) -> np.ndarray:
    slide_path = truth.entry.slide_path(record)
    if slide_path.is_file():
        with Slide.open(slide_path, mpp=record.slide_mpp) as slide:
            return slide.thumbnail(panel_mpp)
    log.warning("%s: slide not found at %s; panel without H&E", truth.entry.stem, slide_path)
    ph, pw = ReadGrid.covering(record.slide_dimensions, record.slide_mpp, panel_mpp).shape
    return np.full((ph, pw, 3), 255, np.uint8)
