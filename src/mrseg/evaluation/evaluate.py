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
from mrseg.core.errors import DataError
from mrseg.evaluation.metrics import DEFAULT_BINS, BinaryHistogram

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


@dataclass(frozen=True)
class Prediction:
    """One model's output for one slide (from ``<stem>.json`` written by ``mrseg predict``)."""

    stem: str
    tiff: Path
    slide_path: Path
    slide_dimensions: tuple[int, int]
    slide_mpp: float
    map_mpp: float


def read_manifest(path: Path) -> dict[str, TruthEntry]:
    """Truth entries from a manifest CSV (columns ``slide`` and ``annotation`` and/or ``mask``, relative paths)."""
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: cannot read manifest: {error}") from error
    if not rows or "slide" not in rows[0]:
        raise DataError(f"{path}: manifest needs a 'slide' column and at least one row")
    out: dict[str, TruthEntry] = {}
    for i, row in enumerate(rows, start=2):
        slide = path.parent / row["slide"]
        truth_name = (row.get("annotation") or "").strip() or (row.get("mask") or "").strip()
        if not truth_name:
            raise DataError(f"{path}, line {i}: slide {row['slide']} has neither annotation nor mask")
        out[slide.stem] = TruthEntry(slide.stem, path.parent / truth_name, slide)
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


def find_predictions(pred_dir: str | os.PathLike[str]) -> dict[str, Prediction]:
    """Finished predictions in a ``mrseg predict`` output folder (slides whose JSON record and TIFF exist)."""
    folder = Path(pred_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: prediction folder not found")
    out: dict[str, Prediction] = {}
    for record_path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(record_path.read_text())
            tiff = folder / record["outputs"]["map"]
            item = Prediction(
                stem=record_path.stem,
                tiff=tiff,
                slide_path=Path(record["slide"]["path"]),
                slide_dimensions=(int(record["slide"]["dimensions"][0]), int(record["slide"]["dimensions"][1])),
                slide_mpp=float(record["slide"]["mpp"]),
                map_mpp=float(record["map"]["mpp"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            log.debug("%s: not a prediction record, ignored", record_path)
            continue
        if tiff.is_file():
            out[item.stem] = item
    if not out:
        raise DataError(f"{folder}: no finished predictions (<stem>.json + <stem>.tif from mrseg predict)")
    return out


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
    """Nearest-neighbour sampling of a probability TIFF onto an evaluation grid, strip by strip."""

    def __init__(self, path: Path, map_mpp: float, target_mpp: float) -> None:
        import tifffile
        import zarr

        self.path = path
        self._tif = tifffile.TiffFile(path)
        series = self._tif.series[0]
        levels = series.levels
        full_h = levels[0].shape[0]
        choice = 0
        for k, level in enumerate(levels):
            if map_mpp * full_h / level.shape[0] <= target_mpp * (1 + 1e-6):
                choice = k
        array: Any = zarr.open(self._tif.aszarr(series=0, level=choice), mode="r")
        self.array = array
        self.dtype = np.dtype(self.array.dtype)

    def rows(self, out_shape: tuple[int, int], v0: int, v1: int) -> np.ndarray:
        """Rows ``v0:v1`` of the map sampled on a ``(h, w)`` grid covering the same area (raw values)."""
        H, W = self.array.shape[:2]
        h, w = out_shape
        rows = np.minimum(((np.arange(v0, v1) + 0.5) * H / h).astype(np.int64), H - 1)
        cols = np.minimum(((np.arange(w) + 0.5) * W / w).astype(np.int64), W - 1)
        strip = np.asarray(self.array[int(rows[0]) : int(rows[-1]) + 1])
        if strip.ndim == 3:
            strip = strip[..., 0]
        return strip[rows - rows[0]][:, cols]

    def to_probability(self, values: np.ndarray) -> np.ndarray:
        if self.dtype == np.uint8:
            return values.astype(np.float32) / 255.0
        return values.astype(np.float32)

    def close(self) -> None:
        self._tif.close()


def _grid(dimensions: tuple[int, int], slide_mpp: float, mpp: float) -> tuple[int, int]:
    w0, h0 = dimensions
    return max(1, round(h0 * slide_mpp / mpp)), max(1, round(w0 * slide_mpp / mpp))


def _tissue(entry: TruthEntry, pred: Prediction, tissue_mpp: float) -> Any:
    from mrseg.wsi.slide import Slide
    from mrseg.wsi.tissue import tissue_mask

    slide_path = entry.slide if entry.slide is not None else pred.slide_path
    if not slide_path.is_file():
        raise DataError(
            f"{entry.stem}: --within tissue needs the slide, not found at {slide_path} "
            "(give a manifest with slide paths, or use --within slide)"
        )
    with Slide.open(slide_path, mpp=pred.slide_mpp) as slide:
        return tissue_mask(slide, mpp=tissue_mpp)


def evaluate(
    preds: Mapping[str, str | os.PathLike[str]],
    truth: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    mpp: float = 2.0,
    within: str = "tissue",
    bins: int = DEFAULT_BINS,
    tissue_mpp: float = 8.0,
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
        dims, slide_mpp = first.slide_dimensions, first.slide_mpp
        h, w = _grid(dims, slide_mpp, mpp)
        annotations = load_annotations(entry.truth, slide_dimensions=dims)
        tissue = _tissue(entry, first, tissue_mpp) if within == "tissue" else None
        readers = {
            name: MapReader(predictions[name][stem].tiff, predictions[name][stem].map_mpp, mpp) for name in preds
        }
        hists = {name: BinaryHistogram(bins) for name in preds}
        step = max(1, STRIP_PIXELS // w)
        sy = dims[1] / h
        try:
            for v0 in range(0, h, step):
                v1 = min(h, v0 + step)
                box = (0.0, v0 * sy, float(dims[0]), v1 * sy)
                labels = annotations.rasterize(box, (w, v1 - v0)) > 0
                valid = tissue.rasterize(box, (w, v1 - v0)) if tissue is not None else None
                for name, reader in readers.items():
                    values = reader.rows((h, w), v0, v1)
                    if reader.dtype == np.uint8:
                        hists[name].update_uint8(values, labels, valid)
                    else:
                        hists[name].update(reader.to_probability(values), labels, valid)
            if stem in panel_stems:
                _panel(out_dir, stem, entry, first, annotations, readers, (h, w), panel_max_side, plot_panel)
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
    pred: Prediction,
    annotations: Any,
    readers: Mapping[str, MapReader],
    grid: tuple[int, int],
    max_side: int,
    plot_panel: Any,
) -> None:
    from mrseg.wsi.slide import Slide

    w0, h0 = pred.slide_dimensions
    scale = max(w0, h0) * pred.slide_mpp / max_side
    panel_mpp = max(pred.slide_mpp, scale)
    ph, pw = _grid(pred.slide_dimensions, pred.slide_mpp, panel_mpp)
    slide_path = entry.slide if entry.slide is not None else pred.slide_path
    if slide_path.is_file():
        with Slide.open(slide_path, mpp=pred.slide_mpp) as slide:
            thumb = slide.thumbnail(panel_mpp)
    else:
        log.warning("%s: slide not found at %s; panel without H&E", stem, slide_path)
        thumb = np.full((ph, pw, 3), 255, np.uint8)
    ph, pw = thumb.shape[:2]
    truth = annotations.rasterize((0.0, 0.0, float(w0), float(h0)), (pw, ph))
    maps = {name: r.to_probability(r.rows((ph, pw), 0, ph)) for name, r in readers.items()}
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
