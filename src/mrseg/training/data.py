"""Training data sets: validate every file up front, split by slide.

The slides come from :func:`mrseg.wsi.manifest.discover` (a manifest, a CAMELYON16 folder or a
``mrseg synth`` folder). :func:`prepare` opens every slide and annotation, computes tissue masks and
reports *all* problems in one :class:`~mrseg.core.errors.DataError` before any training starts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mrseg.core.errors import DataError, MrsegError
from mrseg.core.tissue_spec import DEFAULT_TISSUE_MPP, TissueSettings
from mrseg.wsi.manifest import SlideRecord

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
    has_manifest_split = any(r.split == "train" for r in usable) and any(r.split == "val" for r in usable)
    if mode == "manifest" or (mode == "auto" and has_manifest_split):
        if not has_manifest_split:
            raise DataError("data.split=manifest but the manifest does not mark both train and val slides")
        return [r for r in usable if r.split == "train"], [r for r in usable if r.split == "val"]
    if len(usable) < 2:
        raise DataError(f"need at least 2 slides to split into training and validation, found {len(usable)}")
    rng = np.random.default_rng(seed)
    train: list[SlideRecord] = []
    val: list[SlideRecord] = []
    groups = [[r for r in usable if r.annotation is not None], [r for r in usable if r.annotation is None]]
    n_val_total = max(1, round(len(usable) * val_fraction)) if val_fraction > 0 else 0
    n_val_total = min(n_val_total, len(usable) - 1)
    remaining = n_val_total
    for gi, group in enumerate(groups):
        order = [group[i] for i in rng.permutation(len(group))]
        if gi == len(groups) - 1:
            k = remaining
        else:
            k = min(remaining, round(len(group) * n_val_total / len(usable)))
            if k == 0 and remaining > 0 and len(group) >= 2:
                k = 1
        k = min(k, len(order))
        val += order[:k]
        train += order[k:]
        remaining -= k
    train.sort(key=lambda r: r.name)
    val.sort(key=lambda r: r.name)
    return [replace(r, split="train") for r in train], [replace(r, split="val") for r in val]


def prepare(
    records: Sequence[SlideRecord],
    *,
    tissue_mpp: float = DEFAULT_TISSUE_MPP,
    backend: str = "auto",
    min_mpp: float | None = None,
) -> list[PreparedSlide]:
    """Open and check every slide and annotation; compute the tissue masks for sampling.

    Parameters
    ----------
    records
        The slides to use.
    tissue_mpp
        Resolution of the tissue masks (microns per pixel).
    backend
        Slide backend for :meth:`mrseg.wsi.slide.Slide.open`.
    min_mpp
        The finest mpp the model reads; slides coarser than this are reported (warning only).

    Raises
    ------
    DataError
        Listing every unreadable slide, missing/unreadable annotation and tissue-mask problem.
    """
    from mrseg.wsi.annotations import load_annotations
    from mrseg.wsi.slide import Slide
    from mrseg.wsi.tissue import tissue_mask

    problems: list[str] = []
    prepared: list[PreparedSlide] = []
    names: dict[str, Path] = {}
    for rec in records:
        if rec.name in names and names[rec.name] != rec.slide:
            problems.append(f"{rec.slide}: slide name {rec.name!r} also used by {names[rec.name]}")
        names[rec.name] = rec.slide
        try:
            with Slide.open(rec.slide, backend=backend, mpp=rec.mpp) as slide:  # type: ignore[arg-type]
                dims = (int(slide.dimensions[0]), int(slide.dimensions[1]))
                mpp = float(slide.mpp)
                labels: tuple[int, ...] = ()
                if rec.annotation is not None:
                    if not rec.annotation.is_file():
                        problems.append(f"{rec.slide}: annotation {rec.annotation} not found")
                        continue
                    with load_annotations(rec.annotation, slide_dimensions=dims) as ann:
                        labels = tuple(int(v) for v in ann.labels if v > 0)
                if rec.tissue is not None:
                    tissue = _load_tissue_image(rec.tissue)
                else:
                    tissue = np.asarray(tissue_mask(slide, TissueSettings(mpp=tissue_mpp)).mask, dtype=bool)
        except (MrsegError, OSError, ValueError) as error:
            problems.append(f"{rec.slide}: {error}")
            continue
        if min_mpp is not None and mpp > min_mpp * 1.01:
            log.warning(
                "%s: level-0 mpp %.3g is coarser than the model's finest %.3g (upsampled)", rec.slide, mpp, min_mpp
            )
        index = np.flatnonzero(tissue.ravel()).astype(np.int64)
        if index.size == 0:
            log.warning("%s: no tissue detected; sampling the whole slide", rec.slide)
            index = np.arange(tissue.size, dtype=np.int64)
        prepared.append(PreparedSlide(rec, dims, mpp, labels, index, (int(tissue.shape[0]), int(tissue.shape[1]))))
    if problems:
        raise DataError(f"{len(problems)} problem(s) in the data set:\n  " + "\n  ".join(problems))
    return prepared


def _load_tissue_image(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"tissue mask {path} not found")
    import tifffile
    from PIL import Image

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
