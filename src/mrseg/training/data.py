"""Training data sets: validate every file up front, split by slide.

The slides come from :func:`mrseg.wsi.manifest.discover` (a manifest, a CAMELYON16 folder or a
``mrseg synth`` folder). :func:`prepare` opens every slide and annotation, reads the annotations with
the label spec (:func:`open_annotations`), computes tissue masks and reports *all* problems, among
them annotation labels the spec does not know (:func:`label_problems`), in one
:class:`~mrseg.core.errors.DataError` before any training starts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from mrseg.core.errors import DataError, MrsegError
from mrseg.core.label_spec import LabelSpec
from mrseg.core.tissue_spec import TissueSettings
from mrseg.wsi.annotations import Annotations, VectorAnnotations, load_annotations, sniff_format
from mrseg.wsi.annotations.stats import warn_outside
from mrseg.wsi.manifest import SlideRecord
from mrseg.wsi.slide import Slide
from mrseg.wsi.tissue import tissue_mask

log = logging.getLogger(__name__)


@dataclass
class PreparedSlide:
    """A validated slide with what sampling needs, small and picklable (no open handles).

    Attributes
    ----------
    record
        Where the files are.
    dimensions
        Level-0 ``(width, height)`` in pixels.
    mpp
        Level-0 microns per pixel.
    positive_labels
        Labels > 0 present in the annotations.
    tissue_index
        Flat indices of tissue pixels in the tissue mask (row-major).
    tissue_shape
        ``(h, w)`` of the tissue mask; one mask pixel covers ``W0 / w`` by ``H0 / h`` level-0 pixels.
    """

    record: SlideRecord
    dimensions: tuple[int, int]
    mpp: float
    positive_labels: tuple[int, ...] = ()
    tissue_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    tissue_shape: tuple[int, int] = (1, 1)

    @property
    def name(self) -> str:
        return self.record.name


def exclude_records(records: Sequence[SlideRecord], names: Sequence[str]) -> list[SlideRecord]:
    """Drop records whose slide name (file stem) is in ``names``; log what was dropped."""
    drop = set(names)
    kept = [r for r in records if r.name not in drop]
    dropped = sorted({r.name for r in records} & drop)
    if dropped:
        log.info("excluded %d slide(s): %s", len(dropped), ", ".join(dropped))
    return kept


def split_records(
    records: Sequence[SlideRecord], *, val_fraction: float = 0.2, seed: int = 0, mode: str = "auto"
) -> tuple[list[SlideRecord], list[SlideRecord]]:
    """Split by slide into (train, val); slides marked ``test`` never take part.

    ``mode="manifest"`` takes the manifest's ``split`` column; ``"random"`` draws a seeded
    ``val_fraction`` of the slides (at least one of each when there are two or more slides);
    ``"auto"`` uses the manifest when it names both train and val slides, else random. In random
    mode tumour-bearing slides (those with annotations) and the others are split separately so
    both sides get some of each where possible.

    Raises
    ------
    DataError
        The manifest split is requested but incomplete, or there are too few slides.
    """
    usable = [r for r in records if r.split != "test"]
    if _use_manifest_split(usable, mode):
        return [r for r in usable if r.split == "train"], [r for r in usable if r.split == "val"]
    if len(usable) < 2:
        raise DataError(f"need at least 2 slides to split into training and validation, found {len(usable)}")
    rng = np.random.default_rng(seed)
    annotated = [r for r in usable if r.annotation is not None]
    plain = [r for r in usable if r.annotation is None]
    n_val = _validation_count(len(usable), val_fraction)
    k_annotated = _annotated_share(len(annotated), n_val, len(usable))
    train: list[SlideRecord] = []
    val: list[SlideRecord] = []
    for group, k in ((annotated, k_annotated), (plain, n_val - k_annotated)):
        order = [group[i] for i in rng.permutation(len(group))]
        val += order[:k]
        train += order[k:]
    train.sort(key=lambda r: r.name)
    val.sort(key=lambda r: r.name)
    return [replace(r, split="train") for r in train], [replace(r, split="val") for r in val]


def _use_manifest_split(usable: Sequence[SlideRecord], mode: str) -> bool:
    """Whether the manifest's ``split`` column decides (raises when ``mode="manifest"`` cannot)."""
    marked = any(r.split == "train" for r in usable) and any(r.split == "val" for r in usable)
    if mode == "manifest" and not marked:
        raise DataError("data.split=manifest but the manifest does not mark both train and val slides")
    return mode == "manifest" or (mode == "auto" and marked)


def _validation_count(n_slides: int, val_fraction: float) -> int:
    """Slides held out: ``round(n * fraction)``, at least 1 when the fraction is positive, never all."""
    n_val = max(1, round(n_slides * val_fraction)) if val_fraction > 0 else 0
    return min(n_val, n_slides - 1)


def _annotated_share(n_annotated: int, n_val: int, n_slides: int) -> int:
    """Annotated slides among the ``n_val`` held out: their proportional share, at least one of two or more."""
    k = min(n_val, round(n_annotated * n_val / n_slides))
    if k == 0 and n_val > 0 and n_annotated >= 2:
        k = 1
    return min(k, n_annotated)


def open_annotations(path: Path, dimensions: tuple[int, int], labels: LabelSpec) -> Annotations:
    """Read an annotation file into the labels of ``labels``.

    Vector files (ASAP XML, GeoJSON) map group / class names with ``labels.label_map``; names it
    does not know get label 1 with a warning (the binary CAMELYON convention; with a softmax spec
    :func:`label_problems` then refuses them). Label-mask images carry label values directly.
    """
    label_map = None if sniff_format(path) == "mask" else labels.label_map
    return load_annotations(path, slide_dimensions=dimensions, label_map=label_map)


def label_problems(annotations: Annotations, labels: LabelSpec, path: Path) -> list[str]:
    """What in ``annotations`` the label spec cannot train on, one message per problem (naming ``path``).

    With a **softmax** spec the labels are class indices of the cross-entropy: every vector group /
    class name must be a key of ``labels.label_map`` and every label value (mask images) must be
    below ``labels.num_classes``. With a **sigmoid** (binary) spec every label > 0 is foreground,
    as it always was: unknown names have already become label 1 (with a warning) and mask values
    such as 255 are tumour, so nothing is refused.
    """
    if labels.activation == "sigmoid":
        return []
    problems: list[str] = []
    if isinstance(annotations, VectorAnnotations):
        unknown = sorted({r.group for r in annotations.regions if r.group.casefold() not in labels.label_map})
        known = sorted(labels.label_map)
        problems += [
            f"{path}: annotation group {name!r} is not in labels.label_map ({known})"
            if name
            else f"{path}: annotation(s) without a group/class name (labels.label_map: {known})"
            for name in unknown
        ]
    for value in annotations.labels:
        try:
            labels.check_label(value, str(path))
        except DataError as error:
            problems.append(str(error))
    return problems


def prepare(
    records: Sequence[SlideRecord],
    *,
    tissue: TissueSettings | None = None,
    labels: LabelSpec | None = None,
    backend: str = "auto",
    min_mpp: float | None = None,
) -> list[PreparedSlide]:
    """Open and check every slide and annotation; compute the tissue masks for sampling.

    Parameters
    ----------
    records
        The slides to use.
    tissue
        Tissue detection for slides without a tissue-mask image (default :class:`TissueSettings`).
    labels
        The label spec annotations are read with and checked against (default: binary CAMELYON).
    backend
        Slide backend for :meth:`mrseg.wsi.slide.Slide.open`.
    min_mpp
        The finest mpp the model reads; slides coarser than this are reported (warning only).

    Raises
    ------
    DataError
        Listing every unreadable slide, missing/unreadable annotation, annotation label the spec
        does not know (:func:`label_problems`) and tissue-mask problem.
    """
    tissue = tissue or TissueSettings()
    labels = labels or LabelSpec()
    problems: list[str] = []
    prepared: list[PreparedSlide] = []
    names: dict[str, Path] = {}
    for rec in records:
        if rec.name in names and names[rec.name] != rec.slide:
            problems.append(f"{rec.slide}: slide name {rec.name!r} also used by {names[rec.name]}")
        names[rec.name] = rec.slide
        slide = _prepare_one(rec, tissue, labels, backend, problems)
        if slide is None:
            continue
        if min_mpp is not None and slide.mpp > min_mpp * 1.01:
            log.warning(
                "%s: level-0 mpp %.3g is coarser than the model's finest %.3g (upsampled)",
                rec.slide,
                slide.mpp,
                min_mpp,
            )
        prepared.append(slide)
    if problems:
        if len(problems) == 1:
            raise DataError(f"a problem in the data set: {problems[0]}")
        raise DataError(f"{len(problems)} problems in the data set:\n  " + "\n  ".join(problems))
    return prepared


def _prepare_one(
    rec: SlideRecord, tissue: TissueSettings, labels: LabelSpec, backend: str, problems: list[str]
) -> PreparedSlide | None:
    """Check one slide and its annotation, compute its tissue index; None (and ``problems`` added) on failure."""
    try:
        with Slide.open(rec.slide, backend=backend, mpp=rec.mpp) as slide:  # type: ignore[arg-type]
            dims = (int(slide.dimensions[0]), int(slide.dimensions[1]))
            mpp = float(slide.mpp)
            positive: tuple[int, ...] = ()
            if rec.annotation is not None:
                if not rec.annotation.is_file():
                    problems.append(f"{rec.slide}: annotation {rec.annotation} not found")
                    return None
                with open_annotations(rec.annotation, dims, labels) as ann:
                    found = label_problems(ann, labels, rec.annotation)
                    positive = tuple(int(v) for v in ann.labels if v > 0)
                    if warn_outside(ann, dims, rec.slide) >= 1.0:
                        found.append(
                            f"{rec.annotation}: every annotation lies outside its slide {rec.slide} "
                            f"({dims[0]}x{dims[1]} level-0 px)"
                        )
                if found:
                    problems.extend(found)
                    return None
            if rec.tissue is not None:
                mask = _load_tissue_image(rec.tissue)
            else:
                mask = np.asarray(tissue_mask(slide, tissue).mask, dtype=bool)
    except (MrsegError, OSError, ValueError) as error:
        problems.append(f"{rec.slide}: {error}")
        return None
    index = np.flatnonzero(mask.ravel()).astype(np.int64)
    if index.size == 0:
        log.warning("%s: no tissue detected; sampling the whole slide", rec.slide)
        index = np.arange(mask.size, dtype=np.int64)
    return PreparedSlide(rec, dims, mpp, positive, index, (int(mask.shape[0]), int(mask.shape[1])))


def _load_tissue_image(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"tissue mask {path} not found")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            arr = tifffile.imread(path)
        else:
            with Image.open(path) as im:
                arr = np.asarray(im)
    except Exception as error:  # image libraries raise many types
        raise DataError(f"tissue mask {path}: unreadable ({type(error).__name__}: {error})") from error
    if arr.ndim == 3:
        arr = arr.max(axis=-1)
    return np.asarray(arr) > 0
