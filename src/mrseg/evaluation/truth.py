"""The ground truth of an evaluation: which file holds each slide's labels, and its labels on any grid.

Truth is found in a manifest (read by :func:`mrseg.wsi.manifest.read_manifest`), a folder holding
``manifest.csv`` (what ``mrseg synth`` writes), or a folder of annotation / mask files named after
the slides. :func:`open_truth` reads one slide's truth with the label spec of the predictions
(annotation groups -> labels by ``LabelSpec.label_map``) and, with ``within="tissue"``, its tissue
mask; :class:`SlideTruth` then gives both on any :class:`~mrseg.wsi.geometry.ReadGrid`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mrseg.core.errors import DataError
from mrseg.core.label_spec import EXCLUDE, LabelSpec
from mrseg.core.prediction_record import PredictionRecord
from mrseg.core.tissue_spec import TissueSettings
from mrseg.wsi import manifest
from mrseg.wsi.annotations import Annotations, VectorAnnotations, load_annotations, sniff_format
from mrseg.wsi.geometry import ReadGrid
from mrseg.wsi.slide import Slide
from mrseg.wsi.tissue import TissueMask, tissue_mask

TRUTH_SUFFIXES = manifest.ANNOTATION_SUFFIXES
"""File suffixes of a truth folder's annotation and mask files."""
TRUTH_STEM_SUFFIXES = manifest.ANNOTATION_STEM_SUFFIXES
"""Endings stripped from a truth file's stem to find its slide (``s1_mask.tif`` -> ``s1``)."""
truth_stem = manifest.annotation_stem


@dataclass(frozen=True)
class TruthEntry:
    """Ground truth of one slide: the annotation/mask file (None: a tumour-free slide) and, when known, the slide."""

    stem: str
    truth: Path | None
    slide: Path | None = None

    @property
    def normal(self) -> bool:
        """No truth file: the slide is tumour-free (every pixel background)."""
        return self.truth is None

    def describe(self) -> str:
        """The truth file, or ``"no annotation (tumour-free)"``, for messages."""
        return str(self.truth) if self.truth is not None else f"{self.stem}: no annotation (tumour-free)"

    def slide_path(self, record: PredictionRecord) -> Path:
        """The slide: from the manifest when it names one, else the one the prediction was made from."""
        return self.slide if self.slide is not None else record.slide_path


def read_truth_manifest(path: Path) -> dict[str, TruthEntry]:
    """Truth entries of a manifest (:func:`mrseg.wsi.manifest.read_manifest`).

    A row without annotation or mask is a tumour-free slide (``TruthEntry.truth`` None), as in training.
    """
    return {r.name: TruthEntry(r.name, r.annotation, r.slide) for r in manifest.read_manifest(path)}


def find_truth(truth: str | os.PathLike[str]) -> dict[str, TruthEntry]:
    """Resolve TRUTH: a manifest CSV, a folder with ``manifest.csv`` (e.g. ``mrseg synth``), or a folder of
    annotation / mask files named after the slides (``<stem>.xml``, ``<stem>.geojson``, ``<stem>_mask.tif``...).

    Raises
    ------
    DataError
        Nothing at ``truth``, a manifest row without annotation, two files for one slide, or no file.
    """
    path = Path(truth)
    if path.is_file():
        return read_truth_manifest(path)
    if not path.is_dir():
        raise DataError(f"{path}: truth not found (expected a manifest CSV or a folder)")
    if (path / "manifest.csv").is_file():
        return read_truth_manifest(path / "manifest.csv")
    return scan_truth_folder(path)


def scan_truth_folder(path: Path) -> dict[str, TruthEntry]:
    """Truth entries of a folder of annotation / mask files named after the slides."""
    return {stem: TruthEntry(stem, f) for stem, f in manifest.annotation_files(path).items()}


def _names(items: Iterable[str]) -> str:
    listed = sorted(items)
    return ", ".join(listed[:5]) + (f" (+{len(listed) - 5} more)" if len(listed) > 5 else "")


@dataclass(frozen=True)
class SlideSelection:
    """Which slides an evaluation scores, and which it cannot (with the reason).

    Attributes
    ----------
    stems
        The slides evaluated (sorted): requested, with truth (or counted as normal) and predicted by every model.
    without_truth
        Requested or predicted slides that have no truth file (skipped, or with ``missing_truth="normal"``
        evaluated as tumour-free and listed in ``assumed_normal``).
    assumed_normal
        Slides without truth file evaluated as tumour-free.
    missing_predictions
        ``{model: [stems]}``: slides with truth that the model has no prediction for (skipped for every model).
    """

    stems: list[str]
    without_truth: list[str] = field(default_factory=list)
    assumed_normal: list[str] = field(default_factory=list)
    missing_predictions: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """``missing`` of ``metrics.json``."""
        skipped = sorted(set(self.without_truth) - set(self.assumed_normal))
        return {
            "truth": skipped,
            "assumed_normal": list(self.assumed_normal),
            "predictions": {m: list(s) for m, s in self.missing_predictions.items()},
        }

    def warnings(self) -> list[str]:
        """One line per kind of slide left out or assumed (logged by the evaluation)."""
        lines = []
        skipped = sorted(set(self.without_truth) - set(self.assumed_normal))
        if skipped:
            lines.append(f"{len(skipped)} slide(s) without ground truth are not evaluated: {_names(skipped)}")
        if self.assumed_normal:
            names = _names(self.assumed_normal)
            lines.append(f"{len(self.assumed_normal)} slide(s) without truth file counted as tumour-free: {names}")
        for model, stems in self.missing_predictions.items():
            lines.append(f"model {model!r} lacks predictions for {len(stems)} slide(s), not evaluated: {_names(stems)}")
        return lines


def select_slides(
    truth: Mapping[str, Any],
    preds: Mapping[str, Mapping[str, Any]],
    requested: Sequence[str] | None = None,
    *,
    assume_normal: bool = False,
) -> SlideSelection:
    """The slides every model can be scored on, and those left out (instead of refusing a partial set).

    Parameters
    ----------
    truth
        ``{stem: truth entry}``.
    preds
        ``{model: {stem: prediction record}}``.
    requested
        Only these stems (None: every stem with truth or with a prediction).
    assume_normal
        Count slides with predictions but no truth file as tumour-free instead of skipping them.

    Raises
    ------
    DataError
        No slide is left to evaluate (the message says what is missing where).
    """
    predicted = set().union(*(set(items) for items in preds.values()))
    candidates = set(requested) if requested is not None else set(truth) | predicted
    without_truth = sorted(candidates - set(truth))
    assumed = [s for s in without_truth if assume_normal and s in predicted]
    with_truth = (candidates & set(truth)) | set(assumed)
    missing = {m: sorted(with_truth - set(items)) for m, items in preds.items()}
    missing = {m: stems for m, stems in missing.items() if stems}
    stems = sorted(with_truth - set().union(*(set(s) for s in missing.values())))
    selection = SlideSelection(stems, without_truth, assumed, missing)
    if not stems:
        problems = "; ".join(selection.warnings()) or "no slides requested"
        raise DataError(f"no slide has both ground truth and a prediction of every model: {problems}")
    return selection


def load_truth(path: Path | None, dimensions_l0: tuple[int, int], labels: LabelSpec, *, strict: bool) -> Annotations:
    """Read a truth file with ``labels``' label map (vector files; a mask's pixel values are its labels).

    Parameters
    ----------
    path
        ASAP XML, GeoJSON or label-mask image; None: a tumour-free slide (no region).
    dimensions_l0
        Level-0 ``(width, height)`` of the slide (a mask's scale follows from it).
    labels
        The label spec of the predictions.
    strict
        Refuse annotation classes the label map does not know and labels ``>= labels.num_classes``
        (multi-class evaluation). Binary evaluation keeps the lenient reading: unknown classes are
        tumour (label 1, warned) and every label > 0 is positive.

    Raises
    ------
    DataError
        With ``strict``: an unknown annotation class or a label outside the spec, naming both.
    """
    if path is None:
        return VectorAnnotations([], kind="memory")
    vector = sniff_format(path) != "mask"
    annotations = load_annotations(path, slide_dimensions=dimensions_l0, label_map=labels.label_map if vector else None)
    if strict:
        try:
            check_truth_labels(annotations, labels, path)
        except DataError:
            annotations.close()
            raise
    return annotations


def check_truth_labels(annotations: Annotations, labels: LabelSpec, path: Path) -> None:
    """Raise :class:`DataError` naming ``path`` for an annotation class or label ``labels`` does not know."""
    if isinstance(annotations, VectorAnnotations):
        unknown = sorted({r.group for r in annotations.regions if r.group.casefold() not in labels.label_map})
        if unknown:
            known = ", ".join(sorted(labels.label_map))
            raise DataError(
                f"{path}: annotation class(es) {', '.join(repr(u) for u in unknown)} not in the label map "
                f"of the predictions' label spec (known: {known})"
            )
    for label in annotations.labels:
        if label != EXCLUDE:
            labels.check_label(label, str(path))


@dataclass
class SlideTruth:
    """One slide's truth labels and (optional) tissue mask, rasterised on any grid of that slide.

    Attributes
    ----------
    entry
        Where the truth came from.
    annotations
        The truth as read (labels ``0 .. C-1``; exclusions already cut out).
    tissue
        The slide's tissue mask when only tissue pixels count, else None.
    strict
        Labels were checked against the label spec; :meth:`labels` checks every strip again
        (mask images may hold values their summary level does not show).
    num_classes
        Classes of the label spec.
    """

    entry: TruthEntry
    annotations: Annotations
    tissue: TissueMask | None
    strict: bool
    num_classes: int

    def labels(self, grid: ReadGrid) -> np.ndarray:
        """``uint8 grid.shape`` truth labels on ``grid``."""
        values = self.annotations.rasterize(grid)
        if self.strict and values.size and int(values.max()) >= self.num_classes:
            raise DataError(
                f"{self.entry.describe()}: label {int(values.max())} is not a class of the label spec "
                f"(labels 0..{self.num_classes - 1})"
            )
        return values

    def valid(self, grid: ReadGrid) -> np.ndarray | None:
        """Pixels that count on ``grid`` (the tissue mask), or None when every pixel counts."""
        return self.tissue.rasterize(grid) if self.tissue is not None else None

    def close(self) -> None:
        self.annotations.close()

    def __enter__(self) -> SlideTruth:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_truth(
    entry: TruthEntry, record: PredictionRecord, labels: LabelSpec, *, within: str, tissue_mpp: float
) -> SlideTruth:
    """The truth of one slide for evaluation: annotations read with ``labels``, the tissue mask if asked.

    Multi-class label specs read the truth strictly (see :func:`load_truth`).

    Raises
    ------
    DataError
        ``within="tissue"`` without the slide file, or bad labels (multi-class).
    """
    tissue = slide_tissue(entry, record, tissue_mpp) if within == "tissue" else None
    strict = not labels.is_binary
    annotations = load_truth(entry.truth, record.slide_dimensions, labels, strict=strict)
    return SlideTruth(entry, annotations, tissue, strict, labels.num_classes)


def slide_tissue(entry: TruthEntry, record: PredictionRecord, tissue_mpp: float) -> TissueMask:
    """The tissue mask of the slide of ``entry`` (opened with the prediction's level-0 mpp)."""
    slide_path = entry.slide_path(record)
    if not slide_path.is_file():
        raise DataError(
            f"{entry.stem}: --within tissue needs the slide, not found at {slide_path} "
            "(give a manifest with slide paths, or use --within slide)"
        )
    with Slide.open(slide_path, mpp=record.slide_mpp) as slide:
        return tissue_mask(slide, TissueSettings(mpp=tissue_mpp))


__all__ = [
    "TRUTH_STEM_SUFFIXES",
    "TRUTH_SUFFIXES",
    "SlideSelection",
    "SlideTruth",
    "TruthEntry",
    "check_truth_labels",
    "find_truth",
    "load_truth",
    "open_truth",
    "read_truth_manifest",
    "scan_truth_folder",
    "select_slides",
    "truth_stem",
]
