"""Tumour mimics on the test slides: how much each model mistakes them for tumour, and a close-up figure.

The synthetic generator writes every lesion's kind to ``layouts/<stem>.geojson`` (level-0 pixels):
``tumour`` nests (label 1) and ``mimic`` germinal-centre-like clusters (label 0) share one size
distribution and look alike inside; only the mantle ring around a mimic tells them apart
(``docs/synthetic.md``). This module scores the predicted probability inside each kind on the
evaluation grid and draws one mimic with its surroundings next to every model's map.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mrseg.core.errors import DataError
from mrseg.core.figures import pyplot, save_figure
from mrseg.core.prediction_record import PredictionRecord, read_prediction_record
from mrseg.evaluation.maps import MapReader
from mrseg.wsi.annotations import load_annotations
from mrseg.wsi.annotations.raster import fill_rings
from mrseg.wsi.geometry import ReadGrid
from mrseg.wsi.slide import Slide

log = logging.getLogger(__name__)

#: Lesion kinds scored (layout ``kind`` property).
KINDS: tuple[str, ...] = ("tumour", "mimic")
#: Equivalent radius (µm) of the mimic preferred for the close-up: context is visible at 2-4 µm/px.
PREFERRED_RADIUS_UM = 80.0


@dataclass(frozen=True)
class Lesion:
    """One lesion of a layout: its kind, its rings (level-0 pixels, (n, 2) x/y) and area (level-0 px^2)."""

    kind: str
    rings: list[np.ndarray]
    area_px: float

    @property
    def bounds_l0(self) -> tuple[float, float, float, float]:
        pts = np.concatenate(self.rings)
        return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


def _polygons(geometry: Mapping[str, Any]) -> list[list[list[list[float]]]]:
    if geometry["type"] == "Polygon":
        return [geometry["coordinates"]]
    if geometry["type"] == "MultiPolygon":
        return list(geometry["coordinates"])
    return []


def _ring_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def load_lesions(layout_path: str | os.PathLike[str], kinds: tuple[str, ...] = KINDS) -> list[Lesion]:
    """Lesions of the given kinds from a synthetic layout GeoJSON (level-0 pixels).

    Raises
    ------
    DataError
        The file is missing or not a layout FeatureCollection.
    """
    path = Path(layout_path)
    try:
        data = json.loads(path.read_text())
        features = data["features"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path}: not a synthetic layout GeoJSON ({error})") from error
    out: list[Lesion] = []
    for feature in features:
        kind = (feature.get("properties") or {}).get("kind")
        if kind not in kinds:
            continue
        for polygon in _polygons(feature.get("geometry") or {}):
            rings = [np.asarray(r, dtype=np.float64) for r in polygon if len(r) >= 3]
            if rings:
                area = _ring_area(rings[0]) - sum(_ring_area(r) for r in rings[1:])
                out.append(Lesion(kind, rings, area))
    return out


def _record(pred_dir: Path, stem: str) -> PredictionRecord:
    """The prediction record ``<stem>.json`` of ``mrseg predict`` in ``pred_dir``."""
    return read_prediction_record(pred_dir / f"{stem}.json")


def _sample(record: PredictionRecord, grid: ReadGrid) -> np.ndarray:
    """A prediction's probability map (full resolution) sampled, nearest, on ``grid`` (0 outside)."""
    with MapReader(record.map_path, record) as reader:
        return reader.to_probability(reader.sample(grid))


def mimic_scores(
    layouts: Mapping[str, str | os.PathLike[str]],
    preds: Mapping[str, str | os.PathLike[str]],
    *,
    mpp: float = 2.0,
    threshold: float = 0.5,
) -> dict[str, dict[str, float]]:
    """Mean probability and fraction of pixels >= ``threshold`` inside tumour nests and mimics, per model.

    Parameters
    ----------
    layouts
        ``{slide stem: layout GeoJSON}`` of the slides scored (e.g. the test split).
    preds
        ``{model name: mrseg predict output folder}`` holding every stem.
    mpp
        Resolution of the scoring grid (µm/px) covering each whole slide.

    Returns
    -------
    dict
        ``{model: {"mimic_mean", "mimic_positive", "tumour_mean", "tumour_positive", "mimic_px", "tumour_px"}}``
        pooled over slides (pixel-weighted); NaN where a slide set has no pixel of that kind.
    """
    sums = {m: {k: [0.0, 0.0, 0] for k in KINDS} for m in preds}
    for stem, layout in layouts.items():
        lesions = load_lesions(layout)
        first = _record(Path(next(iter(preds.values()))), stem)
        grid = ReadGrid.covering(first.slide_dimensions, first.slide_mpp, mpp)
        masks = {}
        for kind in KINDS:
            rings = [r for les in lesions if les.kind == kind for r in les.rings]
            masks[kind] = fill_rings(rings, grid).astype(bool) if rings else np.zeros(grid.shape, bool)
        for model, folder in preds.items():
            prob = _sample(_record(Path(folder), stem), grid)
            for kind in KINDS:
                values = prob[masks[kind]]
                acc = sums[model][kind]
                acc[0] += float(values.sum())
                acc[1] += float((values >= threshold).sum())
                acc[2] += int(values.size)
    out: dict[str, dict[str, float]] = {}
    for model, kinds in sums.items():
        row: dict[str, float] = {}
        for kind, (total, positive, n) in kinds.items():
            row[f"{kind}_mean"] = total / n if n else math.nan
            row[f"{kind}_positive"] = positive / n if n else math.nan
            row[f"{kind}_px"] = float(n)
        out[model] = row
    return out


def pick_mimic(layouts: Mapping[str, str | os.PathLike[str]], slide_mpp: float) -> tuple[str, Lesion] | None:
    """The mimic whose equivalent radius is closest to :data:`PREFERRED_RADIUS_UM` (None if there is none)."""
    best: tuple[float, str, Lesion] | None = None
    for stem, layout in layouts.items():
        for les in load_lesions(layout, ("mimic",)):
            radius_um = math.sqrt(max(les.area_px, 0.0) / math.pi) * slide_mpp
            score = abs(radius_um - PREFERRED_RADIUS_UM)
            if best is None or score < best[0]:
                best = (score, stem, les)
    return None if best is None else (best[1], best[2])


def plot_mimic_crop(
    path: str | os.PathLike[str],
    slide_path: str | os.PathLike[str],
    annotation_path: str | os.PathLike[str],
    lesion: Lesion,
    preds: Mapping[str, str | os.PathLike[str]],
    stem: str,
    *,
    margin_um: float = 160.0,
    crop_mpp: float = 1.0,
) -> Path:
    """H&E around one mimic (outlined), ground truth, and each model's probability map on the same crop.

    The crop is a square of level-0 pixels centred on the mimic's bounding box, extending ``margin_um``
    microns beyond it (enough to show the mantle ring), drawn at ``crop_mpp`` µm/px.
    """
    image, grid, dims, slide_mpp = _read_crop(slide_path, lesion, margin_um, crop_mpp)
    with load_annotations(annotation_path, slide_dimensions=dims) as annotations:
        truth = annotations.rasterize(grid) > 0
    maps = {name: _sample(_record(Path(folder), stem), grid) for name, folder in preds.items()}
    field_um = (grid.box_l0[2] - grid.box_l0[0]) * slide_mpp
    title = f"Tumour mimic on test slide {stem} ({field_um:.0f} µm field, label 0)"
    return _draw_crop(path, image, truth, maps, lesion, grid, title)


def _read_crop(
    slide_path: str | os.PathLike[str], lesion: Lesion, margin_um: float, crop_mpp: float
) -> tuple[np.ndarray, ReadGrid, tuple[int, int], float]:
    """The crop's H&E, its grid, the slide's level-0 dimensions and mpp."""
    with Slide.open(slide_path) as slide:
        slide_mpp = float(slide.mpp)
        bx0, by0, bx1, by1 = lesion.bounds_l0
        half = max(bx1 - bx0, by1 - by0) / 2 + margin_um / slide_mpp
        cx, cy = (bx0 + bx1) / 2, (by0 + by1) / 2
        box = (cx - half, cy - half, cx + half, cy + half)
        side = max(16, round(2 * half * slide_mpp / crop_mpp))
        image = slide.read_box(box, (side, side))
        dims = (int(slide.dimensions[0]), int(slide.dimensions[1]))
    return image, ReadGrid(box, (side, side)), dims, slide_mpp


def _draw_crop(
    path: str | os.PathLike[str],
    image: np.ndarray,
    truth: np.ndarray,
    maps: Mapping[str, np.ndarray],
    lesion: Lesion,
    grid: ReadGrid,
    title: str,
) -> Path:
    """One row: H&E with the mimic dashed, ground truth, each model's map with its mean inside the mimic."""
    plt = pyplot()
    n = 2 + len(maps)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 3.0), dpi=110, squeeze=False)
    axes = axes[0]
    x0, y0 = grid.box_l0[:2]
    scale = 1 / grid.scale[0]
    axes[0].imshow(image)
    for ring in lesion.rings[:1]:
        axes[0].plot((ring[:, 0] - x0) * scale, (ring[:, 1] - y0) * scale, color="yellow", lw=1.0, ls="--")
    axes[0].set_title("H&E (mimic dashed)")
    axes[1].imshow(truth, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_title("Ground truth")
    image_handle = None
    inside_mimic = fill_rings(lesion.rings, grid).astype(bool)
    for ax, (name, prob) in zip(axes[2:], maps.items(), strict=True):
        image_handle = ax.imshow(prob, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        inside = prob[inside_mimic]
        ax.set_title(f"{name}\nmean p in mimic {float(inside.mean()) if inside.size else math.nan:.2f}", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if image_handle is not None:
        fig.colorbar(image_handle, ax=list(axes), fraction=0.02, pad=0.01, label="probability")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, tight=True)
