"""Tiny on-the-fly training data for the training tests (not collected: no ``test_`` prefix).

``make_dataset(folder, n_slides)`` writes small pyramidal TIFF slides (white background, pink
"tissue" discs, a darker purple "tumour" disc on some slides), ASAP XML annotations of the tumour
discs and a ``manifest.csv`` like ``mrseg synth`` does. ``make_multiclass_dataset`` writes slides
with three labelled regions (ASAP groups ``tumour``, ``lymphoid``, ``other``; mask values 1, 2, 3:
the classes of :data:`MULTICLASS`). ``corrupt_tiles`` damages a slide part-way.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import tifffile

from mrseg.core.label_spec import LabelSpec
from mrseg.wsi.tiff import write_pyramidal_tiff

SIZE = 384
MPP = 1.0

#: The four-class task of the multi-class recipes: ASAP group -> label (mask value).
MULTICLASS_GROUPS: dict[str, int] = {"tumour": 1, "lymphoid": 2, "other": 3}
MULTICLASS = LabelSpec(classes=("background", "tumour", "lymphoid", "other"), label_map=MULTICLASS_GROUPS)
_COLOURS = {"tumour": (110, 40, 150), "lymphoid": (40, 40, 120), "other": (235, 170, 120)}


def _disc(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r**2


def asap_xml(polygons: list[np.ndarray], group: str = "_0", groups: list[str] | None = None) -> str:
    """ASAP XML text of ``polygons`` (each ``(n, 2)`` level-0 x, y) in ``group`` (or ``groups[i]`` each)."""
    names = groups or [group] * len(polygons)
    ann = []
    for i, (poly, name) in enumerate(zip(polygons, names, strict=True)):
        coords = "".join(f'<Coordinate Order="{k}" X="{x:.2f}" Y="{y:.2f}"/>' for k, (x, y) in enumerate(poly))
        ann.append(
            f'<Annotation Name="A{i}" Type="Polygon" PartOfGroup="{name}" Color="#F4FA58">'
            f"<Coordinates>{coords}</Coordinates></Annotation>"
        )
    group_xml = "".join(
        f'<Group Name="{name}" PartOfGroup="None" Color="#F4FA58"><Attributes/></Group>'
        for name in dict.fromkeys(names)
    )
    return (
        '<?xml version="1.0"?><ASAP_Annotations><Annotations>'
        + "".join(ann)
        + f"</Annotations><AnnotationGroups>{group_xml}</AnnotationGroups></ASAP_Annotations>"
    )


def _circle(cx: float, cy: float, r: float) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def make_slide(path: Path, seed: int, tumour: bool) -> np.ndarray | None:
    """Write one slide; return the tumour polygon (level-0) or None."""
    rng = np.random.default_rng(seed)
    img = np.full((SIZE, SIZE, 3), 255, dtype=np.uint8)
    tissue = _disc(SIZE, SIZE, SIZE / 2, SIZE / 2, SIZE * 0.38)
    noise = rng.integers(-12, 12, size=(SIZE, SIZE, 3))
    pink = np.clip(np.array([225, 150, 190]) + noise, 0, 255).astype(np.uint8)
    img[tissue] = pink[tissue]
    poly = None
    if tumour:
        cx, cy, r = SIZE / 2 + rng.uniform(-30, 30), SIZE / 2 + rng.uniform(-30, 30), 50.0
        poly = _circle(cx, cy, r)
        inside = _disc(SIZE, SIZE, cx, cy, r * 0.99)
        purple = np.clip(np.array([110, 40, 150]) + noise, 0, 255).astype(np.uint8)
        img[inside] = purple[inside]
    write_pyramidal_tiff(path, img, MPP, tile=128, compression="zlib")
    return poly


def make_dataset(folder: Path, n_slides: int = 5, *, splits: list[str] | None = None) -> Path:
    """Write ``n_slides`` slides (every other one with a tumour) and ``manifest.csv``; return the manifest."""
    (folder / "slides").mkdir(parents=True, exist_ok=True)
    (folder / "annotations").mkdir(exist_ok=True)
    rows = []
    for i in range(n_slides):
        name = f"slide_{i:02d}"
        poly = make_slide(folder / "slides" / f"{name}.tif", seed=i, tumour=i % 2 == 0)
        annotation = ""
        if poly is not None:
            (folder / "annotations" / f"{name}.xml").write_text(asap_xml([poly]))
            annotation = f"annotations/{name}.xml"
        rows.append(
            {
                "slide": f"slides/{name}.tif",
                "annotation": annotation,
                "mask": "",
                "split": splits[i] if splits else "",
            }
        )
    return _write_manifest(folder, rows)


def _write_manifest(folder: Path, rows: list[dict[str, str]]) -> Path:
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["slide", "annotation", "mask", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def make_multiclass_slide(path: Path, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Write a slide with a tumour, a lymphoid and an "other tissue" disc on pink tissue.

    Returns the three polygons (level-0, in :data:`MULTICLASS_GROUPS` order) and the label mask
    ``(SIZE, SIZE)`` uint8 (0 background, 1 tumour, 2 lymphoid, 3 other).
    """
    rng = np.random.default_rng(seed)
    img = np.full((SIZE, SIZE, 3), 255, dtype=np.uint8)
    noise = rng.integers(-12, 12, size=(SIZE, SIZE, 3))
    tissue = _disc(SIZE, SIZE, SIZE / 2, SIZE / 2, SIZE * 0.42)
    img[tissue] = np.clip(np.array([225, 150, 190]) + noise, 0, 255).astype(np.uint8)[tissue]
    labels = np.zeros((SIZE, SIZE), dtype=np.uint8)
    polygons = []
    for (name, label), angle in zip(MULTICLASS_GROUPS.items(), (0.0, 2.1, 4.2), strict=True):
        angle += rng.uniform(-0.3, 0.3)
        cx, cy, r = SIZE / 2 + 90 * np.cos(angle), SIZE / 2 + 90 * np.sin(angle), 45.0
        polygons.append(_circle(cx, cy, r))
        inside = _disc(SIZE, SIZE, cx, cy, r * 0.99)
        img[inside] = np.clip(np.array(_COLOURS[name]) + noise, 0, 255).astype(np.uint8)[inside]
        labels[inside] = label
    write_pyramidal_tiff(path, img, MPP, tile=128, compression="zlib")
    return polygons, labels


def make_multiclass_dataset(folder: Path, n_slides: int = 3, *, masks: bool = False) -> Path:
    """Write ``n_slides`` four-class slides with ASAP XML (or, with ``masks``, label-mask TIFFs) and a manifest."""
    (folder / "slides").mkdir(parents=True, exist_ok=True)
    (folder / "annotations").mkdir(exist_ok=True)
    rows = []
    for i in range(n_slides):
        name = f"slide_{i:02d}"
        polygons, labels = make_multiclass_slide(folder / "slides" / f"{name}.tif", seed=100 + i)
        row = {"slide": f"slides/{name}.tif", "annotation": "", "mask": "", "split": ""}
        if masks:
            tifffile.imwrite(folder / "annotations" / f"{name}.tif", labels)
            row["mask"] = f"annotations/{name}.tif"
        else:
            xml = asap_xml(polygons, groups=list(MULTICLASS_GROUPS))
            (folder / "annotations" / f"{name}.xml").write_text(xml)
            row["annotation"] = f"annotations/{name}.xml"
        rows.append(row)
    return _write_manifest(folder, rows)


def multiclass_overrides(data: Path, **extra: object) -> list[str]:
    """:func:`tiny_overrides` plus the four-class label spec (softmax cross-entropy)."""
    labels = {
        "labels.classes": "[background, tumour, lymphoid, other]",
        "labels.label_map": "{tumour: 1, lymphoid: 2, other: 3}",
    }
    return tiny_overrides(data, **{**labels, **extra})


def tiny_overrides(data: Path, **extra: object) -> list[str]:
    """``--set`` overrides for a seconds-long CPU run on :func:`make_dataset` data."""
    base = {
        "data.path": str(data),
        "data.num_workers": 0,
        "data.tissue.mpp": 8.0,
        "model.name": "mrn_bilinear",
        "model.mpps": "[1.0, 2.0]",
        "model.patch_size": 16,
        "model.width": 4,
        "model.depth": 2,
        "train.epochs": 2,
        "train.steps_per_epoch": 3,
        "train.batch_size": 4,
        "train.num_threads": 1,
        "sampling.val_samples": 8,
        "output.tensorboard": False,
        "output.progress": False,
    }
    base.update({k: v for k, v in extra.items()})
    return [f"{k}={v}" for k, v in base.items()]


def corrupt_tiles(path: Path, tiles: list[int] | None = None, *, page: int = 0) -> None:
    """Overwrite tiles of one page of a TIFF slide with garbage in place (all tiles when ``tiles`` is None).

    The file still opens and its other pages (the pyramid's coarser levels, which tissue detection
    reads) are intact, so the damage shows only when a patch needs one of these tiles: a slide that
    is really corrupt part-way.
    """
    with tifffile.TiffFile(path) as tif:
        tiff_page = tif.pages[page]
        spans = list(zip(tiff_page.dataoffsets, tiff_page.databytecounts, strict=True))  # type: ignore[union-attr]
    with path.open("r+b") as fh:
        for index in range(len(spans)) if tiles is None else tiles:
            offset, count = spans[index]
            fh.seek(offset)
            fh.write(b"\xa5" * count)
