"""What a viewer serves: its slides, the prediction maps over each, and their ground truth, all by id.

:func:`build_catalog` resolves the command line (slides or a folder, ``NAME=DIR`` prediction folders,
a truth file or folder) into a :class:`Catalog` and checks everything before the server starts: every
slide opens, every prediction record matches its slide (level-0 size, map size and resolution),
every map TIFF opens and every truth file parses; a problem is a :class:`~mrseg.core.errors.MrsegError`
naming the file. Requests then address slides, predictions and maps only by these ids (letters,
digits, ``.``, ``_`` and ``-``): nothing a URL says becomes a path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mrseg.core.errors import ConfigError, DataError
from mrseg.core.label_spec import LabelSpec
from mrseg.core.prediction_record import PredictionRecord, find_prediction_records
from mrseg.view.deepzoom import DeepZoomGrid
from mrseg.view.maps import MapRaster, check_map_fits
from mrseg.view.pool import HandlePool
from mrseg.wsi import manifest
from mrseg.wsi.annotations import Annotations, load_annotations, sniff_format
from mrseg.wsi.slide import Slide

log = logging.getLogger(__name__)

#: What an id may contain.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: Most side-by-side panes (and so the most predictions shown at once).
MAX_PANES = 6


def as_id(text: str) -> str:
    """``text`` with every character an id may not hold replaced by ``-`` (``"a b/c"`` -> ``"a-b-c"``)."""
    clean = re.sub(r"[^A-Za-z0-9._-]", "-", text).strip(".-_")[:128]
    return clean or "slide"


@dataclass
class MapSource:
    """One probability map of one prediction of one slide (a TIFF, opened per request thread)."""

    key: str
    name: str
    color: str
    label: int
    path: Path
    pool: HandlePool[MapRaster]
    version: str


@dataclass
class Layer:
    """One prediction (model) of one slide: its record and its maps (``map``, ``class<k>``)."""

    pred_id: str
    record: PredictionRecord
    maps: dict[str, MapSource]


@dataclass
class SlideSource:
    """One slide served: its file, Deep Zoom grid, prediction layers and ground truth."""

    id: str
    path: Path
    dimensions: tuple[int, int]
    mpp: float
    level_count: int
    backend: str
    grid: DeepZoomGrid
    pool: HandlePool[Slide]
    version: str
    layers: dict[str, Layer] = field(default_factory=dict)
    truth: Annotations | None = None
    truth_path: Path | None = None


@dataclass
class Catalog:
    """Everything a viewer serves: slides by id and the names of the predictions (in command-line order)."""

    slides: dict[str, SlideSource]
    predictions: list[str]
    labels: LabelSpec

    def close(self) -> None:
        """Close every open slide, map and mask handle."""
        for slide in self.slides.values():
            slide.pool.close()
            for layer in slide.layers.values():
                for source in layer.maps.values():
                    source.pool.close()
            if slide.truth is not None:
                slide.truth.close()


def file_version(path: Path) -> str:
    """A short token that changes when the file does (its path, size and modification time)."""
    st = path.stat()
    return hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]


def find_slides(source: str | os.PathLike[str]) -> tuple[list[Path], dict[str, Path]]:
    """Slides of SLIDE|FOLDER, and the truth files a manifest names for them (``{stem: file}``).

    A file is one slide; a folder with a manifest (``manifest.csv``, what ``mrseg synth`` writes) lists
    its slides and their annotations; another folder gives the slide files directly in it.

    Raises
    ------
    DataError
        Nothing at ``source``, or a folder without slides.
    """
    path = Path(source)
    if path.is_file():
        return [path], {}
    if not path.is_dir():
        raise DataError(f"{path}: no such slide or folder")
    if any((path / name).is_file() for name in ("manifest.csv", "manifest.yaml", "manifest.yml")):
        records = manifest.discover(path)
        return [r.slide for r in records], {r.slide.stem: r.annotation for r in records if r.annotation is not None}
    slides = manifest.slide_files(path)
    if not slides:
        raise DataError(f"{path}: no slide files ({', '.join(sorted(manifest.SLIDE_SUFFIXES))})")
    return slides, {}


def find_truth_files(truth: str | os.PathLike[str] | None, stems: Sequence[str]) -> dict[str, Path]:
    """``{stem: file}`` of ``--truth``: one file (for a single slide) or a folder of files named after the slides."""
    if truth is None:
        return {}
    path = Path(truth)
    if path.is_file():
        if len(stems) != 1:
            raise ConfigError(f"--truth {path}: one file is the truth of one slide; give a folder for {len(stems)}")
        return {stems[0]: path}
    if not path.is_dir():
        raise DataError(f"{path}: no such truth file or folder")
    if (path / "manifest.csv").is_file():
        return {r.slide.stem: r.annotation for r in manifest.read_manifest(path / "manifest.csv") if r.annotation}
    return manifest.annotation_files(path)


def parse_predictions(items: Sequence[str]) -> dict[str, Path]:
    """``NAME=DIR`` (or ``DIR``, named after it) items -> ``{id: folder}`` in order.

    Raises
    ------
    ConfigError
        A name that is not an id, or a name given twice.
    """
    out: dict[str, Path] = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep:
            name, folder = Path(item).name or item, item
        if not ID_PATTERN.match(name):
            raise ConfigError(f"--pred {item}: name {name!r} may hold only letters, digits, '.', '_' and '-'")
        if name in out:
            raise ConfigError(f"--pred: model name {name!r} given twice")
        out[name] = Path(folder)
    return out


def open_slide_source(path: Path, slide_id: str, slide_mpp: float | None, backend: str) -> SlideSource:
    """Open ``path`` once (errors surface now) and describe it; later reads borrow handles from its pool."""
    with Slide.open(path, backend=backend, mpp=slide_mpp) as slide:
        dims, mpp, levels, used = slide.dimensions, slide.mpp, slide.level_count, slide.backend
    pool: HandlePool[Slide] = HandlePool(lambda: Slide.open(path, backend=used, mpp=mpp), Slide.close)
    return SlideSource(slide_id, path, dims, mpp, levels, used, DeepZoomGrid(dims), pool, file_version(path))


def _map_keys(labels: LabelSpec, record: PredictionRecord) -> list[tuple[str, str, str, int]]:
    """``(key, name, colour, label)`` of the maps of a record: the foreground, then each class of a multi-class task."""
    color = "#{:02x}{:02x}{:02x}".format(*labels.color(1))
    if labels.is_binary:
        return [("map", labels.classes[1], color, 1)]
    keys = [("map", "foreground", "#ffffff", 1)]
    for k in range(1, labels.num_classes):
        if f"class{k}" in record.outputs:
            keys.append((f"class{k}", labels.classes[k], "#{:02x}{:02x}{:02x}".format(*labels.color(k)), k))
    return keys


def _map_opener(path: Path, pixel_l0: float) -> Callable[[], MapRaster]:
    return lambda: MapRaster(path, pixel_l0)


def open_layer(pred_id: str, record: PredictionRecord, slide: SlideSource) -> Layer:
    """Check ``record`` against its slide and open its maps.

    Raises
    ------
    DataError
        The record was made on a slide of another size, or a map is unreadable or of the wrong size.
    """
    what = f"--pred {pred_id}: {record.path}"
    if tuple(record.slide_dimensions) != tuple(slide.dimensions):
        raise DataError(
            f"{what} was predicted on a {record.slide_dimensions[0]}x{record.slide_dimensions[1]} slide, but "
            f"{slide.path} is {slide.dimensions[0]}x{slide.dimensions[1]}: the map does not match its slide"
        )
    if abs(record.slide_mpp - slide.mpp) > 1e-3 * slide.mpp:
        log.warning("%s: predicted at %g um/px, the slide is read at %g um/px", what, record.slide_mpp, slide.mpp)
    pixel_l0 = record.map_pixel_l0
    maps: dict[str, MapSource] = {}
    for key, name, color, label in _map_keys(record.labels, record):
        path = record.output(key)
        raster = MapRaster(path, pixel_l0)  # raises DataError for an unreadable map
        try:
            check_map_fits(raster.shape, pixel_l0, slide.dimensions, f"{what} ({path.name})")
        finally:
            raster.close()
        pool: HandlePool[MapRaster] = HandlePool(_map_opener(path, pixel_l0), MapRaster.close)
        maps[key] = MapSource(key, name, color, label, path, pool, file_version(path))
    return Layer(pred_id, record, maps)


def build_catalog(
    source: str | os.PathLike[str],
    predictions: Mapping[str, str | os.PathLike[str]] | None = None,
    truth: str | os.PathLike[str] | None = None,
    *,
    slide_mpp: float | None = None,
    backend: str = "auto",
) -> Catalog:
    """Open and check everything ``mrseg view`` was started with.

    Parameters
    ----------
    source
        A slide file, or a folder of slides (a manifest's slides and annotations when it has one).
    predictions
        ``{id: mrseg predict output folder}``; each folder's records are matched to the slides by stem.
    truth
        A truth file (one slide) or folder (files named after the slides, or a manifest); None: the
        manifest's annotations, if any.
    slide_mpp
        Level-0 microns per pixel of the slides, overriding their metadata.
    backend
        Slide backend name (``auto``, ``openslide``, ``tiffslide``...).

    Raises
    ------
    MrsegError
        A slide that cannot be read, a prediction folder without a prediction of these slides, a map
        that does not match its slide, an unreadable truth file (each naming the file and the reason).
    """
    paths, manifest_truth = find_slides(source)
    slides: dict[str, SlideSource] = {}
    for path in paths:
        slide_id = as_id(path.stem)
        while slide_id in slides:
            slide_id += "-2"
        slides[slide_id] = open_slide_source(path, slide_id, slide_mpp, backend)
    catalog = Catalog(slides, list(predictions or {}), LabelSpec())
    try:
        _add_predictions(catalog, predictions or {})
        stems = [s.path.stem for s in slides.values()]
        _add_truth(catalog, find_truth_files(truth, stems) if truth is not None else manifest_truth)
    except BaseException:
        catalog.close()
        raise
    log.info("viewer: %d slide(s), %d prediction(s)", len(slides), len(catalog.predictions))
    return catalog


def _add_predictions(catalog: Catalog, predictions: Mapping[str, str | os.PathLike[str]]) -> None:
    by_stem = {s.path.stem: s for s in catalog.slides.values()}
    for pred_id, folder in predictions.items():
        if not ID_PATTERN.match(pred_id):
            raise ConfigError(f"prediction name {pred_id!r} may hold only letters, digits, '.', '_' and '-'")
        records = find_prediction_records(folder)
        matched = [stem for stem in records if stem in by_stem]
        if not matched:
            raise DataError(
                f"--pred {pred_id}: {folder} holds predictions of {sorted(records)[:5]}, none of the slides "
                f"{sorted(by_stem)[:5]}"
            )
        for stem in matched:
            slide = by_stem[stem]
            slide.layers[pred_id] = open_layer(pred_id, records[stem], slide)
        if pred_id == catalog.predictions[0]:
            catalog.labels = records[matched[0]].labels  # truth is read with the first model's label spec


def _add_truth(catalog: Catalog, files: Mapping[str, Path]) -> None:
    by_stem = {s.path.stem: s for s in catalog.slides.values()}
    for stem, path in files.items():
        slide = by_stem.get(stem)
        if slide is None:
            log.debug("truth %s: no slide %r among the slides shown", path, stem)
            continue
        label_map = None if sniff_format(path) == "mask" else catalog.labels.label_map  # masks hold labels
        slide.truth = load_annotations(path, slide_dimensions=slide.dimensions, label_map=label_map)
        slide.truth_path = path


__all__ = [
    "ID_PATTERN",
    "MAX_PANES",
    "Catalog",
    "Layer",
    "MapSource",
    "SlideSource",
    "as_id",
    "build_catalog",
    "file_version",
    "find_slides",
    "find_truth_files",
    "open_layer",
    "open_slide_source",
    "parse_predictions",
]
