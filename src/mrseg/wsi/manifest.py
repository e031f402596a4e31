"""Data sets of slides: manifests (CSV/YAML), CAMELYON16 folders and ``mrseg synth`` folders -> slide records.

The one reader of slide lists, used by training (:mod:`mrseg.training.data`) and evaluation
(:mod:`mrseg.evaluation.truth`). A **manifest** is CSV or YAML with columns/keys ``slide``
(required), ``annotation`` (ASAP XML or GeoJSON), ``mask`` (label-mask image), ``tissue``
(tissue-mask image), ``split`` (``train``/``val``/``test``) and ``mpp`` (override for slides without
metadata); relative paths are relative to the manifest. A ``labels`` column (the label scheme, e.g.
``multiclass`` as ``mrseg synth --labels multiclass`` writes) is informational. A **CAMELYON16-style folder** has
``training/{normal,tumor}/*.tif`` (or ``normal/``, ``tumor/`` at the top) and
``lesion_annotations/*.xml`` beside them (or at the top). A folder written by ``mrseg synth`` has a
``manifest.csv``.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mrseg.core.errors import DataError

log = logging.getLogger(__name__)

_TRAIN = {"train", "training"}
_VAL = {"val", "valid", "validation"}
_TEST = {"test", "testing", "holdout"}
#: File suffixes of whole-slide images (a folder of slides lists these files).
SLIDE_SUFFIXES = frozenset({".tif", ".tiff", ".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide"})
#: File suffixes of annotation and mask files (ASAP XML, GeoJSON, label-mask images).
ANNOTATION_SUFFIXES = frozenset({".xml", ".geojson", ".json", ".tif", ".tiff", ".png"})
#: Endings stripped from an annotation file's stem to find its slide (``s1_mask.tif`` -> ``s1``).
ANNOTATION_STEM_SUFFIXES = ("_mask", "_annotation", "_annotations")


@dataclass(frozen=True)
class SlideRecord:
    """One line of a data set (paths absolute).

    Attributes
    ----------
    slide
        The whole-slide image.
    annotation
        Vector annotations or a label-mask image (None: the slide is all background).
    tissue
        Optional tissue-mask image covering the whole slide (non-zero = tissue).
    split
        ``"train"``, ``"val"``, ``"test"`` or None (decided by :func:`split_records`).
    mpp
        Level-0 microns per pixel override (None: from the slide's metadata).
    """

    slide: Path
    annotation: Path | None = None
    tissue: Path | None = None
    split: str | None = None
    mpp: float | None = None

    @property
    def name(self) -> str:
        return self.slide.stem


def discover(path: str | os.PathLike[str]) -> list[SlideRecord]:
    """Read a manifest, a synth folder or a CAMELYON16-style folder into records.

    Raises
    ------
    DataError
        Nothing usable at ``path`` (the message says what was expected).
    """
    path = Path(path)
    if path.is_file():
        return read_manifest(path)
    if not path.is_dir():
        raise DataError(f"{path}: no such manifest or data folder")
    for name in ("manifest.csv", "manifest.yaml", "manifest.yml"):
        if (path / name).is_file():
            return read_manifest(path / name)
    return scan_camelyon16(path)


def read_manifest(path: str | os.PathLike[str]) -> list[SlideRecord]:
    """Read a CSV (header row) or YAML (list of mappings, or ``{slides: [...]}``) manifest."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            loaded = yaml.safe_load(path.read_text())
            rows = loaded.get("slides") if isinstance(loaded, dict) else loaded
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise DataError(f"{path}: expected a list of mappings (or a `slides:` list) with a `slide` key")
        else:
            with path.open(newline="") as fh:
                rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, csv.Error) as error:
        raise DataError(f"{path}: cannot read manifest: {error}") from error
    base = path.parent
    records: list[SlideRecord] = []
    problems: list[str] = []
    first_row = 2 if path.suffix.lower() == ".csv" else 1
    for i, row in enumerate(rows, start=first_row):
        row = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
        unknown = set(row) - {"slide", "annotation", "mask", "tissue", "split", "mpp", "name", "label", "labels"}
        if unknown and i == first_row:
            log.warning("%s: ignoring unknown column(s) %s", path, sorted(unknown))
        slide = _path_or_none(row.get("slide"), base)
        if slide is None:
            problems.append(f"row {i}: no `slide` path")
            continue
        annotation = _path_or_none(row.get("annotation"), base) or _path_or_none(row.get("mask"), base)
        split = _clean(row.get("split"))
        split_norm = _normalise_split(split)
        if split is not None and split_norm is None:
            problems.append(f"row {i}: split {split!r} is not train/val/test")
        mpp_raw = _clean(row.get("mpp"))
        mpp: float | None = None
        if mpp_raw is not None:
            try:
                mpp = float(mpp_raw)
            except ValueError:
                problems.append(f"row {i}: mpp {mpp_raw!r} is not a number")
        records.append(SlideRecord(slide, annotation, _path_or_none(row.get("tissue"), base), split_norm, mpp))
    if problems:
        raise DataError(f"{path}: bad manifest: " + "; ".join(problems))
    if not records:
        raise DataError(f"{path}: manifest lists no slides")
    return records


def scan_camelyon16(folder: str | os.PathLike[str]) -> list[SlideRecord]:
    """Records of a CAMELYON16 training folder (``normal/``, ``tumor/``, ``lesion_annotations/``).

    Tumour slides need an annotation ``<name>.xml``; missing ones are reported by :func:`prepare`.
    """
    folder = Path(folder)
    root = folder / "training" if (folder / "training").is_dir() else folder
    ann_dirs = [d for d in (root / "lesion_annotations", folder / "lesion_annotations") if d.is_dir()]
    records: list[SlideRecord] = []
    for kind in ("normal", "tumor"):
        sub = root / kind
        if not sub.is_dir():
            continue
        for slide in sorted(p for p in sub.iterdir() if p.suffix.lower() in SLIDE_SUFFIXES):
            annotation = None
            for d in ann_dirs:
                if (d / f"{slide.stem}.xml").is_file():
                    annotation = d / f"{slide.stem}.xml"
                    break
            if kind == "tumor" and annotation is None:
                annotation = (ann_dirs[0] if ann_dirs else root / "lesion_annotations") / f"{slide.stem}.xml"
            records.append(SlideRecord(slide.resolve(), annotation.resolve() if annotation else None))
    if not records:
        raise DataError(
            f"{folder}: not a data set: expected a manifest (CSV/YAML), a folder with manifest.csv "
            "(mrseg synth), or a CAMELYON16 folder with training/normal/*.tif and training/tumor/*.tif"
        )
    return records


def slide_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The slide files directly in ``folder`` (by suffix, :data:`SLIDE_SUFFIXES`), sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in SLIDE_SUFFIXES and p.is_file())


def annotation_stem(path: Path) -> str:
    """The slide stem an annotation or mask file belongs to (``s1_mask.tif`` -> ``s1``)."""
    stem = path.stem
    for suffix in ANNOTATION_STEM_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem


def annotation_files(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """``{slide stem: file}`` of a folder of annotation / mask files named after the slides.

    Raises
    ------
    DataError
        Two files for one slide, or no file with an :data:`ANNOTATION_SUFFIXES` suffix.
    """
    folder = Path(folder)
    out: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.suffix.lower() not in ANNOTATION_SUFFIXES or not f.is_file():
            continue
        stem = annotation_stem(f)
        if stem in out:
            raise DataError(f"{folder}: two truth files for slide {stem!r}: {out[stem].name} and {f.name}")
        out[stem] = f
    if not out:
        raise DataError(f"{folder}: no annotation or mask files ({', '.join(sorted(ANNOTATION_SUFFIXES))})")
    return out


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _path_or_none(value: Any, base: Path) -> Path | None:
    text = _clean(value)
    if text is None:
        return None
    p = Path(text).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def _normalise_split(value: str | None) -> str | None:
    if value is None:
        return None
    v = value.lower()
    if v in _TRAIN:
        return "train"
    if v in _VAL:
        return "val"
    if v in _TEST:
        return "test"
    return None
