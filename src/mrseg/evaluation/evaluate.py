"""Pixel-level evaluation of predicted probability maps against ground truth, streaming and memory-bounded.

Every slide is evaluated on one **evaluation grid**: the box ``(0, 0, W0, H0)`` of level 0 cut into
``w x h`` pixels with ``w = round(W0 * slide_mpp / mpp)`` (the read-request grid of
``docs/architecture.md``), at the stated ``mpp``. The grid is processed in strips of rows: the
prediction is sampled (nearest, from the closest pyramid level of its TIFF that is at least as
fine), the truth is rasterised with :meth:`mrseg.wsi.annotations.Annotations.rasterize` and, with
``within="tissue"``, the tissue mask of the slide restricts the pixels counted. Each model keeps
one :class:`mrseg.evaluation.metrics.BinaryHistogram` per slide and one pooled over all slides.

Positive pixels are those with truth label > 0 (every lesion class against the rest); the
prediction is the foreground probability map ``<stem>.tif`` written by ``mrseg predict``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mrseg.core.atomic import atomic_write_text
from mrseg.core.encoding import ProbabilityEncoding
from mrseg.core.errors import DataError
from mrseg.core.prediction_record import PredictionRecord, find_prediction_records
from mrseg.core.tissue_spec import DEFAULT_TISSUE_MPP, TissueSettings
from mrseg.evaluation.metrics import DEFAULT_BINS, BinaryHistogram
from mrseg.wsi import geometry as geo
from mrseg.wsi import manifest
from mrseg.wsi.geometry import ReadGrid

log = logging.getLogger(__name__)

_TRUTH_SUFFIXES = {".xml", ".geojson", ".json", ".tif", ".tiff", ".png"}
_TRUTH_STEM_SUFFIXES = ("_mask", "_annotation", "_annotations")
#: Rows of the evaluation grid processed at once (memory ~ rows x width x 10 bytes per model).
STRIP_PIXELS = 1 << 22


@dataclass(frozen=True)
class TruthEntry:
    """Ground truth of one slide: the annotation/mask file and, when known, the slide."""

    stem: str
    truth: Path
    slide: Path | None = None


def read_manifest(path: Path) -> dict[str, TruthEntry]:
    """Truth entries of a manifest (:func:`mrseg.wsi.manifest.read_manifest`); each slide needs an annotation/mask."""
    out: dict[str, TruthEntry] = {}
    for record in manifest.read_manifest(path):
        if record.annotation is None:
            raise DataError(f"{path}: slide {record.slide.name} has neither annotation nor mask")
        out[record.name] = TruthEntry(record.name, record.annotation, record.slide)
    return out


def find_truth(truth: str | os.PathLike[str]) -> dict[str, TruthEntry]:
    """Resolve TRUTH: a manifest CSV, a folder with ``manifest.csv`` (e.g. ``mrseg synth``), or a folder of
    annotation / mask files named after the slides (``<stem>.xml``, ``<stem>.geojson``, ``<stem>_mask.tif``...)."""
    path = Path(truth)
    if path.is_file():
        return read_manifest(path)
    if not path.is_dir():
        raise DataError(f"{path}: truth not found (expected a manifest CSV or a folder)")
    if (path / "manifest.csv").is_file():
        return read_manifest(path / "manifest.csv")
    out: dict[str, TruthEntry] = {}
    for f in sorted(path.iterdir()):
        if f.suffix.lower() not in _TRUTH_SUFFIXES or not f.is_file():
            continue
        stem = f.stem
        for suffix in _TRUTH_STEM_SUFFIXES:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
        if stem in out:
            raise DataError(f"{path}: two truth files for slide {stem!r}: {out[stem].truth.name} and {f.name}")
        out[stem] = TruthEntry(stem, f)
    if not out:
        raise DataError(f"{path}: no annotation or mask files ({', '.join(sorted(_TRUTH_SUFFIXES))})")
    return out


def find_predictions(pred_dir: str | os.PathLike[str]) -> dict[str, PredictionRecord]:
    """Finished predictions in a ``mrseg predict`` output folder (see :func:`find_prediction_records`)."""
    return find_prediction_records(pred_dir)


def check_slide_sets(truth: Mapping[str, Any], preds: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The common slide stems, or :class:`DataError` naming what is missing where."""

    def names(items: set[str]) -> str:
        listed = sorted(items)
        return ", ".join(listed[:5]) + (f" (+{len(listed) - 5} more)" if len(listed) > 5 else "")

    expected = set(truth)
    problems = []
    for model, items in preds.items():
        got = set(items)
        if got - expected:
            problems.append(f"model {model!r} has predictions without ground truth: {names(got - expected)}")
        if expected - got:
            problems.append(f"model {model!r} lacks predictions for: {names(expected - got)}")
    if problems:
        raise DataError("mismatched slide sets: " + "; ".join(problems))
    return sorted(expected)


class MapReader:
    """Nearest-neighbour sampling of a probability TIFF onto an evaluation grid, strip by strip.

    Reads the coarsest pyramid level of the TIFF that is still at least as fine as ``target_mpp``;
    level ``k`` of a map whose pixels cover ``d`` level-0 pixels covers ``d * 2**k`` (the pyramid's
    integer factor, :func:`mrseg.wsi.geometry.snap_downsample`).
    """

    def __init__(self, record: PredictionRecord, target_mpp: float) -> None:
        import tifffile
        import zarr

        self.path = record.map_path
        self._tif = tifffile.TiffFile(self.path)
        series = self._tif.series[0]
        levels = series.levels
        full = (int(levels[0].shape[1]), int(levels[0].shape[0]))
        choice, factor = 0, 1.0
        for k, level in enumerate(levels):
            dims = (int(level.shape[1]), int(level.shape[0]))
            f = geo.snap_downsample(full, dims, full[0] / dims[0])
            if record.map_mpp * f <= target_mpp * (1 + 1e-6):
                choice, factor = k, f
        array: Any = zarr.open(self._tif.aszarr(series=0, level=choice), mode="r")
        self.array = array
        self.grid = ReadGrid.of_map(array.shape[:2], record.map_pixel_l0 * factor)
        self.encoding = (
            record.encoding if record.encoding.numpy_dtype == array.dtype else ProbabilityEncoding.of(array.dtype)
        )
        self.dtype = self.encoding.numpy_dtype

    def sample(self, grid: ReadGrid) -> np.ndarray:
        """The map's stored values on ``grid`` (0 where the grid lies outside the map)."""
        values = geo.sample_nearest(self.array, self.grid, grid)
        return values[..., 0] if values.ndim == 3 else values

    def to_probability(self, values: np.ndarray) -> np.ndarray:
        return self.encoding.decode(values)

    def close(self) -> None:
        self._tif.close()


def _tissue(entry: TruthEntry, pred: PredictionRecord, tissue_mpp: float) -> Any:
    from mrseg.wsi.slide import Slide
    from mrseg.wsi.tissue import tissue_mask

    slide_path = entry.slide if entry.slide is not None else pred.slide_path
    if not slide_path.is_file():
        raise DataError(
            f"{entry.stem}: --within tissue needs the slide, not found at {slide_path} "
            "(give a manifest with slide paths, or use --within slide)"
        )
    with Slide.open(slide_path, mpp=pred.slide_mpp) as slide:
        return tissue_mask(slide, TissueSettings(mpp=tissue_mpp))


def evaluate(
    preds: Mapping[str, str | os.PathLike[str]],
    truth: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    mpp: float = 2.0,
    within: str = "tissue",
    bins: int = DEFAULT_BINS,
    tissue_mpp: float = DEFAULT_TISSUE_MPP,
    panels: Sequence[str] | None = None,
    panel_max_side: int = 768,
) -> dict[str, Any]:
    """Evaluate one or more prediction folders against ground truth; write metrics.json, metrics.csv, roc.png.

    Parameters
    ----------
    preds
        ``{model name: mrseg predict output folder}``.
    truth
        Manifest CSV, folder with ``manifest.csv``, or folder of annotation/mask files (see :func:`find_truth`).
    out_dir
        Where the reports go (``metrics.json``, ``metrics.csv``, ``roc.png``, ``panel_<stem>.png``).
    mpp
        Resolution of the evaluation grid in microns per pixel.
    within
        ``"tissue"`` (count pixels in the slide's tissue mask only) or ``"slide"`` (all pixels).
    bins
        Histogram bins over [0, 1] (ROC resolution).
    panels
        Slide stems to draw a qualitative panel for (default: the first slide).

    Returns
    -------
    dict
        The content of metrics.json.

    Raises
    ------
    DataError
        Missing folders/files, no predictions, or prediction and truth slide sets that differ.
    """
    from mrseg.evaluation.plots import plot_panel, plot_roc
    from mrseg.wsi.annotations import load_annotations

    if within not in ("tissue", "slide"):
        raise DataError(f"--within must be 'tissue' or 'slide', got {within!r}")
    if not mpp > 0:
        raise DataError(f"--mpp must be positive, got {mpp}")
    out_dir = Path(out_dir)
    truth_entries = find_truth(truth)
    predictions = {name: find_predictions(folder) for name, folder in preds.items()}
    stems = check_slide_sets(truth_entries, predictions)
    panel_stems = list(panels) if panels else stems[:1]
    unknown = [s for s in panel_stems if s not in truth_entries]
    if unknown:
        raise DataError(f"--panel: unknown slide(s) {', '.join(unknown)}; known: {', '.join(stems)}")
    pooled = {name: BinaryHistogram(bins) for name in preds}
    per_slide: dict[str, dict[str, BinaryHistogram]] = {name: {} for name in preds}
    for stem in stems:
        entry = truth_entries[stem]
        first = predictions[next(iter(preds))][stem]
        for name in preds:
            other = predictions[name][stem]
            if other.slide_dimensions != first.slide_dimensions:
                raise DataError(
                    f"{stem}: models disagree on the slide size ({first.slide_dimensions} vs {other.slide_dimensions})"
                )
        dims = first.slide_dimensions
        grid = ReadGrid.covering(dims, first.slide_mpp, mpp)
        annotations = load_annotations(entry.truth, slide_dimensions=dims)
        tissue = _tissue(entry, first, tissue_mpp) if within == "tissue" else None
        readers = {name: MapReader(predictions[name][stem], mpp) for name in preds}
        hists = {name: BinaryHistogram(bins) for name in preds}
        step = max(1, STRIP_PIXELS // grid.width)
        try:
            for v0 in range(0, grid.height, step):
                strip = grid.rows(v0, min(grid.height, v0 + step))
                labels = annotations.rasterize(strip) > 0
                valid = tissue.rasterize(strip) if tissue is not None else None
                for name, reader in readers.items():
                    values = reader.sample(strip)
                    if reader.dtype == np.uint8:
                        hists[name].update_uint8(values, labels, valid)
                    else:
                        hists[name].update(reader.to_probability(values), labels, valid)
            if stem in panel_stems:
                _panel(out_dir, stem, entry, first, annotations, readers, panel_max_side, plot_panel)
        finally:
            for reader in readers.values():
                reader.close()
            annotations.close()
        for name in preds:
            per_slide[name][stem] = hists[name]
            pooled[name] += hists[name]
            log.info("%s / %s: AUC %.4f", name, stem, hists[name].auc())
    result = {
        "settings": {"mpp": mpp, "within": within, "bins": bins, "truth": str(truth), "positive": "label > 0"},
        "predictions": {name: str(folder) for name, folder in preds.items()},
        "slides": stems,
        "models": {
            name: {
                "pooled": pooled[name].summary() | {"histogram": pooled[name].to_dict()},
                "per_slide": {stem: per_slide[name][stem].summary() for stem in stems},
            }
            for name in preds
        },
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "metrics.json", json.dumps(result, indent=2, allow_nan=True))
    atomic_write_text(out_dir / "metrics.csv", _csv(result))
    curves = {name: (*pooled[name].roc()[:2], pooled[name].auc()) for name in preds}
    plot_roc(out_dir / "roc.png", curves, title=f"Pixel-level ROC at {mpp:g} µm/px ({within})")
    return result


def _panel(
    out_dir: Path,
    stem: str,
    entry: TruthEntry,
    pred: PredictionRecord,
    annotations: Any,
    readers: Mapping[str, MapReader],
    max_side: int,
    plot_panel: Any,
) -> None:
    from mrseg.wsi.slide import Slide

    w0, h0 = pred.slide_dimensions
    scale = max(w0, h0) * pred.slide_mpp / max_side
    panel_mpp = max(pred.slide_mpp, scale)
    ph, pw = ReadGrid.covering(pred.slide_dimensions, pred.slide_mpp, panel_mpp).shape
    slide_path = entry.slide if entry.slide is not None else pred.slide_path
    if slide_path.is_file():
        with Slide.open(slide_path, mpp=pred.slide_mpp) as slide:
            thumb = slide.thumbnail(panel_mpp)
    else:
        log.warning("%s: slide not found at %s; panel without H&E", stem, slide_path)
        thumb = np.full((ph, pw, 3), 255, np.uint8)
    ph, pw = thumb.shape[:2]
    grid = ReadGrid((0.0, 0.0, float(w0), float(h0)), (pw, ph))
    truth = annotations.rasterize(grid)
    maps = {name: r.to_probability(r.sample(grid)) for name, r in readers.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_panel(out_dir / f"panel_{stem}.png", thumb, truth, maps, title=stem)


def _csv(result: Mapping[str, Any]) -> str:
    columns = ["model", "slide", "auc", "threshold_kind", "threshold", "dice", "iou", "precision", "recall"]
    columns += ["specificity", "accuracy", "n_positive", "n_negative"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for model, m in result["models"].items():
        rows = [("pooled", m["pooled"]), *list(m["per_slide"].items())]
        for slide, summary in rows:
            for kind, scores in [*(("at", s) for s in summary["at"].values()), ("best_dice", summary["best_dice"])]:
                label = "best_dice" if kind == "best_dice" else "fixed"
                writer.writerow(
                    [model, slide, _fmt(summary["auc"]), label, _fmt(scores["threshold"])]
                    + [_fmt(scores[k]) for k in ("dice", "iou", "precision", "recall", "specificity", "accuracy")]
                    + [summary["n_positive"], summary["n_negative"]]
                )
    return buffer.getvalue()


def _fmt(value: float) -> str:
    return "nan" if value != value else f"{value:.6g}"
