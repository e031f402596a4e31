"""Write a synthetic data set: slides, ASAP annotations, label masks, layouts, manifest, synth.json.

Output folder ``OUT``::

    slides/synth_000.tif        pyramidal tiled (256) JPEG RGB, resolution tags -> mpp
    annotations/synth_000.xml   ASAP XML: binary labels: tumour in group _0, lumens cut out of it in
                                group _2; multi-class labels: groups tumour, lymphoid, other
    masks/synth_000_mask.tif    uint8 labels (binary: 0 background/normal, 1 tumour; multi-class:
                                0 glass, 1 tumour, 2 lymphoid, 3 other tissue) at the slide's mpp,
                                pyramidal, lossless (zlib), reduced levels by nearest neighbour
    layouts/synth_000.geojson   every lesion (tumour, focus, mimic), mimic mantle rings, lumens,
                                primary follicles and tissue in level-0 pixels (for analysis)
    manifest.csv                slide, annotation, mask, split (paths relative to OUT), and a
                                labels column (multiclass) for multi-class labels
    synth.json                  arguments, SynthParams, per-slide facts, and the label scheme
                                (multi-class labels; see :mod:`mrseg.synth.labels`)

The data set is built in a temporary sibling folder and renamed to ``OUT`` only when complete.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from mrseg import __version__
from mrseg.core.atomic import atomic_path, check_replaceable, sweep_stale
from mrseg.core.errors import ConfigError, MrsegError
from mrseg.core.locks import output_lock
from mrseg.core.workers import worker_pool
from mrseg.synth.asap import write_asap_xml
from mrseg.synth.labels import (
    MULTICLASS_CLASSES,
    LabelScheme,
    annotation_groups,
    check_labels,
    paint_groups,
    scheme_record,
    to_pixels,
)
from mrseg.synth.layout import SlideLayout, make_layout
from mrseg.synth.params import SynthParams
from mrseg.synth.render import Stain, class_raster, render, sample_stain
from mrseg.wsi.tiff import write_pyramidal_tiff

log = logging.getLogger(__name__)

MIN_SIZE_PX = 512
#: The file every data set holds: only a folder with it is replaced by ``overwrite``.
MARKER = "synth.json"
MPP_RANGE = (0.1, 2.0)


@dataclass
class SlideRecord:
    """What was written for one slide (paths relative to the data-set folder)."""

    name: str
    slide: str
    annotation: str
    mask: str
    layout: str
    has_tumour: bool
    facts: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _layout_geojson(layout: SlideLayout, mpp: float) -> dict[str, Any]:
    features: list[dict[str, Any]] = []

    def add(kind: str, geom: BaseGeometry | None, **props: Any) -> None:
        if geom is None or geom.is_empty:
            return
        gj = json.loads(shapely.to_geojson(to_pixels(geom, mpp, 2)))
        features.append({"type": "Feature", "geometry": gj, "properties": {"kind": kind, **props}})

    add("tissue", layout.tissue)
    for i, les in enumerate(layout.lesions):
        add(les.kind, les.polygon, lesion=i, label=int(les.kind != "mimic"))
        add("mantle", les.ring, lesion=i)
        add("lumen", les.lumen, lesion=i)
    for follicle in layout.follicles:
        add("follicle", follicle)
    return {"type": "FeatureCollection", "properties": {"frame": "level-0 pixels", "mpp": mpp}, "features": features}


def generate_slide(
    out_dir: Path,
    name: str,
    seed: int,
    index: int,
    size_px: tuple[int, int],
    mpp: float,
    params: SynthParams,
    threads: int = 1,
    labels: LabelScheme = "binary",
) -> SlideRecord:
    """Generate and write one slide (seeded from ``(seed, index)``) with its annotation, mask and layout.

    ``threads`` strips are rendered concurrently; the files do not depend on it. ``labels`` chooses
    the label scheme of the annotation and the mask (:mod:`mrseg.synth.labels`); the slide itself
    and its layout do not depend on it.
    """
    width, height = size_px
    rng = np.random.default_rng([seed, index])
    t0 = time.perf_counter()
    layout = make_layout(rng, width * mpp, height * mpp, params)
    stain = sample_stain(rng, params)
    t1 = time.perf_counter()
    classes = class_raster(layout, size_px, mpp)
    image = render(layout, classes, mpp, stain, params, (seed, index), threads=threads)
    del classes
    groups = annotation_groups(layout, mpp, labels)
    mask = paint_groups(groups, size_px)
    t2 = time.perf_counter()
    rec = SlideRecord(
        name=name,
        slide=f"slides/{name}.tif",
        annotation=f"annotations/{name}.xml",
        mask=f"masks/{name}_mask.tif",
        layout=f"layouts/{name}.geojson",
        has_tumour=layout.has_tumour,
    )
    write_pyramidal_tiff(out_dir / rec.slide, image, mpp, tile=256, compression="jpeg", quality=90)
    del image
    write_pyramidal_tiff(out_dir / rec.mask, mask, mpp, tile=256, compression="zlib", downsample="nearest")
    write_asap_xml(out_dir / rec.annotation, groups)
    (out_dir / rec.layout).parent.mkdir(parents=True, exist_ok=True)
    (out_dir / rec.layout).write_text(json.dumps(_layout_geojson(layout, mpp)))
    t3 = time.perf_counter()
    rec.facts = _facts(layout, mask, stain, labels)
    rec.seconds = {"layout": t1 - t0, "render": t2 - t1, "write": t3 - t2}
    if not layout.lesions:
        log.warning(
            "%s: no lesion fitted in %.0f x %.0f um of slide; use a larger --size", name, width * mpp, height * mpp
        )
    log.info("%s: %s, %.1fs", name, "tumour" if layout.has_tumour else "no tumour", t3 - t0)
    return rec


def _facts(layout: SlideLayout, mask: np.ndarray, stain: Stain, labels: LabelScheme) -> dict[str, Any]:
    """Per-slide facts for ``synth.json`` (areas in mm^2, counts, stain; pixel counts per class for multi-class)."""
    um2_per_mm2 = 1e6
    facts = {
        "has_tumour": layout.has_tumour,
        "tumour_nests": len(layout.of_kind("tumour")),
        "tumour_foci": len(layout.of_kind("focus")),
        "mimics": len(layout.of_kind("mimic")),
        "follicles": len(layout.follicles),
        "tissue_mm2": round(layout.tissue.area / um2_per_mm2, 4),
        "tumour_mm2": round(layout.tumour_geometry().area / um2_per_mm2, 4),
        "mimic_mm2": round(sum(m.polygon.area for m in layout.of_kind("mimic")) / um2_per_mm2, 4),
        "tumour_pixels": int(np.count_nonzero(mask == 1)),
        "stain": asdict(stain),
    }
    if labels == "multiclass":
        counts = np.bincount(mask.ravel(), minlength=len(MULTICLASS_CLASSES))
        facts["class_pixels"] = {name: int(counts[i]) for i, name in enumerate(MULTICLASS_CLASSES)}
    return facts


def parse_split(text: str) -> dict[str, float]:
    """Parse ``"train=0.8,val=0.2"`` into a dict (fractions are normalised by :func:`assign_splits`)."""
    out: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value) if sep else math.nan
        except ValueError:
            out[name.strip()] = math.nan
        if not sep or not name.strip() or not math.isfinite(out[name.strip()]):
            raise ConfigError(f"bad split item {item!r}: expected NAME=FRACTION, e.g. train=0.8,val=0.2")
    if not out:
        raise ConfigError(f"empty split {text!r}: expected e.g. train=0.8,val=0.2")
    return out


def assign_splits(has_tumour: list[bool], fractions: Mapping[str, float], seed: int) -> list[str]:
    """Assign each slide a split, proportionally to ``fractions`` and stratified by tumour presence.

    Slides are ordered tumour-bearing first (each group shuffled with ``seed``) and each in turn goes
    to the split furthest behind its quota, so every split gets its share of tumour slides.
    """
    for name, frac in fractions.items():
        if not (frac > 0 and math.isfinite(frac)):
            raise ConfigError(f"split fraction for {name!r} must be > 0, got {frac}")
    total = sum(fractions.values())
    names = list(fractions)
    quota = np.array([fractions[n] / total for n in names])
    rng = np.random.default_rng([seed, 2**31 - 1])
    idx = np.arange(len(has_tumour))
    flags = np.asarray(has_tumour, dtype=bool)
    order = np.concatenate([rng.permutation(idx[flags]), rng.permutation(idx[~flags])])
    counts = np.zeros(len(names))
    out = [""] * len(has_tumour)
    for k, slide in enumerate(order):
        choice = int(np.argmax(quota * (k + 1) - counts))
        counts[choice] += 1
        out[int(slide)] = names[choice]
    return out


def _check_args(out_dir: Path, n_slides: int, size: tuple[int, int], mpp: float, overwrite: bool) -> None:
    if isinstance(n_slides, bool) or not isinstance(n_slides, (int, np.integer)) or n_slides < 1:
        raise ConfigError(f"number of slides must be an integer >= 1, got {n_slides!r}")
    if min(size) < MIN_SIZE_PX:
        raise ConfigError(f"slide size must be at least {MIN_SIZE_PX} px per side, got {size[0]}x{size[1]}")
    if not (isinstance(mpp, (int, float)) and math.isfinite(mpp) and mpp > 0):
        raise ConfigError(f"mpp must be a positive number, got {mpp!r}")
    if not (MPP_RANGE[0] <= mpp <= MPP_RANGE[1]):
        raise ConfigError(f"mpp must be in [{MPP_RANGE[0]}, {MPP_RANGE[1]}] microns per pixel, got {mpp}")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ConfigError(f"output folder {out_dir} exists and is not empty (pass overwrite=True / --overwrite)")
    check_replaceable(out_dir, MARKER, "mrseg synth")


def generate(
    out_dir: str | os.PathLike[str],
    n_slides: int,
    seed: int = 0,
    size_px: int | tuple[int, int] = 8192,
    mpp: float = 0.5,
    split: Mapping[str, float] | str | None = None,
    *,
    params: SynthParams | None = None,
    prefix: str = "synth",
    workers: int = 1,
    threads: int = 1,
    labels: LabelScheme = "binary",
    overwrite: bool = False,
) -> Path:
    """Generate a synthetic lymph-node-like data set and return the path of its ``manifest.csv``.

    Parameters
    ----------
    out_dir
        Output folder (created; must not exist, be empty, or ``overwrite`` must be set).
    n_slides
        Number of slides (>= 1). Slide ``i`` is seeded from ``(seed, i)``: the first slides of a
        larger data set are identical to those of a smaller one with the same seed.
    seed
        Data-set seed.
    size_px
        Level-0 size of every slide in pixels at ``mpp`` (int for square, or ``(width, height)``).
    mpp
        Microns per level-0 pixel. All geometry is in microns, so the same seed and the same
        physical size give the same tissue at another mpp.
    split
        ``None`` (empty split column), fractions like ``{"train": 0.8, "val": 0.2}`` or the string
        ``"train=0.8,val=0.2"``; assignment is stratified by tumour presence.
    params
        Generator parameters (defaults: :class:`SynthParams`).
    prefix
        File-name prefix of the slides.
    workers
        Processes generating slides in parallel (output is identical for any value).
    threads
        Threads rendering the strips of each slide (output is identical for any value); helps only
        when cores are idle, prefer ``workers`` for several slides.
    labels
        ``"binary"`` (tumour 1, the rest 0; ASAP groups ``_0``/``_2``, as CAMELYON16) or
        ``"multiclass"`` (0 glass, 1 tumour, 2 lymphoid, 3 other tissue; ASAP groups ``tumour``,
        ``lymphoid``, ``other``; recorded in ``synth.json`` and the manifest's ``labels`` column).
        The slides are the same either way (:mod:`mrseg.synth.labels`).
    overwrite
        Replace an existing non-empty ``out_dir``.

    Returns
    -------
    Path
        ``out_dir / "manifest.csv"``.
    """
    out = Path(out_dir)
    size = (int(size_px), int(size_px)) if isinstance(size_px, (int, np.integer)) else tuple(map(int, size_px))
    if len(size) != 2:
        raise ConfigError(f"size_px must be an int or (width, height), got {size_px!r}")
    _check_args(out, n_slides, size, mpp, overwrite)  # type: ignore[arg-type]
    if workers < 1 or threads < 1:
        raise ConfigError(f"workers and threads must be >= 1, got {workers} and {threads}")
    labels = check_labels(labels)
    fractions = parse_split(split) if isinstance(split, str) else (dict(split) if split is not None else None)
    params = params or SynthParams()
    digits = max(3, len(str(n_slides - 1)))
    names = [f"{prefix}_{i:0{digits}d}" for i in range(n_slides)]
    log.info("generating %d slides of %dx%d px at %g mpp into %s", n_slides, size[0], size[1], mpp, out)
    where = out.absolute()
    with output_lock(where.parent / f".{where.name}.lock", f"data set {out}"):
        sweep_stale(where.parent, where.stem)
        _check_args(out, n_slides, size, mpp, overwrite)  # type: ignore[arg-type]  # again, under the lock
        _write_dataset(out, names, int(seed), size, float(mpp), params, workers, threads, labels, fractions)
    return out / "manifest.csv"


def _write_dataset(
    out: Path,
    names: list[str],
    seed: int,
    size: tuple[int, int],
    mpp: float,
    params: SynthParams,
    workers: int,
    threads: int,
    labels: LabelScheme,
    fractions: dict[str, float] | None,
) -> None:
    """Generate every slide into a temporary sibling of ``out``, write the manifest and synth.json, rename."""
    n_slides = len(names)
    with atomic_path(out, is_dir=True) as tmp:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; give the data set ordinary permissions
        for sub in ("slides", "annotations", "masks", "layouts"):
            (tmp / sub).mkdir()
        args = [(tmp, name, int(seed), i, size, float(mpp), params, threads, labels) for i, name in enumerate(names)]
        if workers > 1 and n_slides > 1:
            records = _generate_in_workers(args, min(workers, n_slides))
        else:
            records = [generate_slide(*a) for a in args]
        splits = assign_splits([r.has_tumour for r in records], fractions, int(seed)) if fractions else None
        meta: dict[str, Any] = {
            "generator": "mrseg.synth",
            "version": __version__,
            "seed": int(seed),
            "n_slides": n_slides,
            "size_px": list(size),
            "mpp": float(mpp),
            "mask_mpp": float(mpp),
            **({"labels": scheme_record(labels)} if labels != "binary" else {}),
            "split": fractions,
            "params": params.to_dict(),
            "slides": [
                {"name": r.name, "split": splits[i] if splits else None, **r.facts} for i, r in enumerate(records)
            ],
        }
        (tmp / "synth.json").write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / "manifest.csv").write_text(_manifest_csv(records, splits, labels))
        for path in tmp.rglob("*"):  # atomic writes use mkstemp (0600): give ordinary permissions
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


class SynthInterrupted(MrsegError):
    """SIGTERM stopped the generation; its workers were killed and nothing was written at the output."""


def _interrupted() -> SynthInterrupted:
    return SynthInterrupted("interrupted by SIGTERM: the slide workers were stopped, no data set was written")


def _generate_in_workers(args: list[tuple[Any, ...]], workers: int) -> list[SlideRecord]:
    """:func:`generate_slide` of every argument tuple in ``workers`` processes, in order.

    An error, Ctrl-C or SIGTERM (:class:`SynthInterrupted`) kills the workers before the temporary
    data set is removed, so none goes on writing into it (:mod:`mrseg.core.workers`).
    """
    with worker_pool(workers, _interrupted) as pool:
        return list(pool.map(generate_slide, *zip(*args, strict=True)))


def _manifest_csv(records: list[SlideRecord], splits: list[str] | None, labels: LabelScheme) -> str:
    """``manifest.csv``: slide, annotation, mask, split (and the label scheme unless binary)."""
    extra = [] if labels == "binary" else [labels]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["slide", "annotation", "mask", "split"] + (["labels"] if extra else []))
    for i, r in enumerate(records):
        writer.writerow([r.slide, r.annotation, r.mask, splits[i] if splits else "", *extra])
    return buf.getvalue()
