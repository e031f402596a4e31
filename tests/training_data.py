"""Tiny on-the-fly training data for the training tests (not collected: no ``test_`` prefix).

``make_dataset(folder, n_slides)`` writes small pyramidal TIFF slides (white background, pink
"tissue" discs, a darker purple "tumour" disc on some slides), ASAP XML annotations of the tumour
discs and a ``manifest.csv`` like ``mrseg synth`` does.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from mrseg.wsi.tiff import write_pyramidal_tiff

SIZE = 384
MPP = 1.0


def _disc(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r**2


def asap_xml(polygons: list[np.ndarray], group: str = "_0") -> str:
    """ASAP XML text of ``polygons`` (each ``(n, 2)`` level-0 x, y)."""
    ann = []
    for i, poly in enumerate(polygons):
        coords = "".join(f'<Coordinate Order="{k}" X="{x:.2f}" Y="{y:.2f}"/>' for k, (x, y) in enumerate(poly))
        ann.append(
            f'<Annotation Name="A{i}" Type="Polygon" PartOfGroup="{group}" Color="#F4FA58">'
            f"<Coordinates>{coords}</Coordinates></Annotation>"
        )
    return (
        '<?xml version="1.0"?><ASAP_Annotations><Annotations>'
        + "".join(ann)
        + f'</Annotations><AnnotationGroups><Group Name="{group}" PartOfGroup="None" Color="#F4FA58">'
        "<Attributes/></Group></AnnotationGroups></ASAP_Annotations>"
    )


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
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        poly = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)
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
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["slide", "annotation", "mask", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def tiny_overrides(data: Path, **extra: object) -> list[str]:
    """``--set`` overrides for a seconds-long CPU run on :func:`make_dataset` data."""
    base = {
        "data.path": str(data),
        "data.num_workers": 0,
        "data.tissue_mpp": 8.0,
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
