"""Pictures of the synthetic data set for ``docs/synthetic.md``.

``python -m mrseg.synth.figures docs/img`` generates a small data set in a temporary folder and
writes ``synth_thumbnail.png`` (a slide with its tumour, mimic and mantle outlines),
``synth_concentric.png`` (concentric 64-px patches at 0.5/1/2/4 mpp centred in a tumour nest and in
a mimic) and ``synth_local.png`` (0.5-mpp patches from tumours and mimics, side by side).
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from PIL import Image
from shapely.geometry import shape

from mrseg.core.figures import pyplot, save_figure
from mrseg.core.input_spec import InputSpec
from mrseg.synth.writer import generate
from mrseg.wsi.concentric import read_concentric
from mrseg.wsi.slide import Slide

log = logging.getLogger(__name__)

MPPS = (0.5, 1.0, 2.0, 4.0)
PATCH = 64
THUMB_MPP = 4.0
_STYLES = {
    "tumour": ("#e00000", "-", "tumour nest (label 1)"),
    "focus": ("#ff8c00", "-", "small tumour focus (label 1)"),
    "mimic": ("#0050ff", "-", "mimic (label 0)"),
    "mantle": ("#00b050", ":", "mantle ring (context)"),
}
Kinds = dict[str, list[Any]]


def _layout(root: Path, name: str) -> Kinds:
    data = json.loads((root / "layouts" / f"{name}.geojson").read_text())
    kinds: Kinds = {}
    for feat in data["features"]:
        kinds.setdefault(feat["properties"]["kind"], []).append(shape(feat["geometry"]))
    return kinds


def _centre(poly: Any) -> tuple[float, float]:
    p = shapely.maximum_inscribed_circle(poly).coords[0] if hasattr(shapely, "maximum_inscribed_circle") else None
    if p is None:
        p = poly.representative_point().coords[0]
    return float(p[0]), float(p[1])


def _shrink(path: Path) -> None:
    """Re-save a PNG with a 256-colour palette (keeps documentation images small)."""
    with Image.open(path) as im:
        small = im.convert("RGB").quantize(256, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def thumbnail_figure(slide: Slide, kinds: Kinds, path: Path) -> Path:
    """The slide at :data:`THUMB_MPP` with the outlines of its lesions and mantle rings."""
    plt = pyplot()
    f = slide.mpp / THUMB_MPP
    fig, ax = plt.subplots(figsize=(6.5, 6.5), dpi=100)
    ax.imshow(slide.thumbnail(THUMB_MPP))
    for kind, (colour, ls, label) in _STYLES.items():
        rings = [
            r
            for poly in kinds.get(kind, [])
            for part in shapely.get_parts(poly)
            for r in (part.exterior, *part.interiors)
        ]
        for index, ring in enumerate(rings):
            xy = np.asarray(ring.coords) * f
            ax.plot(xy[:, 0], xy[:, 1], color=colour, ls=ls, lw=1.0, label=label if index == 0 else None)
    ax.legend(loc="lower left", fontsize=7, framealpha=0.8)
    ax.set_axis_off()
    w0 = slide.dimensions[0]
    ax.set_title(f"synthetic slide ({w0} px at {slide.mpp:g} mpp), thumbnail at {THUMB_MPP:g} mpp", fontsize=9)
    save_figure(fig, path, tight=True)
    _shrink(path)
    return path


def concentric_figure(slide: Slide, kinds: Kinds, path: Path) -> Path:
    """Concentric patches centred in a typical tumour nest and a typical mimic (radius ~80 um, no lumen)."""
    plt = pyplot()
    lumens = kinds.get("lumen", [])

    def typical(polys: list[Any]) -> Any:
        plain = [p for p in polys if not any(p.contains(lum) for lum in lumens)] or polys
        return min(plain, key=lambda p: abs(p.area - np.pi * (80 / slide.mpp) ** 2))

    spec = InputSpec(MPPS, PATCH)
    fig, axes = plt.subplots(2, len(MPPS), figsize=(2.1 * len(MPPS), 4.6), dpi=100)
    for row, (title, poly) in enumerate(
        (("tumour (1)", typical(kinds["tumour"])), ("mimic (0)", typical(kinds["mimic"])))
    ):
        patches = read_concentric(slide, _centre(poly), spec)
        for j, mpp in enumerate(MPPS):
            ax = axes[row, j]
            ax.imshow(patches[j], interpolation="nearest")
            if j > 0:  # the previous (finer) field of view
                half, c = PATCH * MPPS[j - 1] / mpp / 2, PATCH / 2 - 0.5
                ax.add_patch(plt.Rectangle((c - half, c - half), 2 * half, 2 * half, fill=False, ec="yellow", lw=0.8))
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"{mpp:g} mpp ({PATCH * mpp:g} um)", fontsize=8)
            if j == 0:
                ax.set_ylabel(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, tight=True)


def _point_inside(poly: Any, rng: np.random.Generator) -> tuple[float, float]:
    minx, miny, maxx, maxy = poly.bounds
    for _ in range(200):
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if poly.contains(shapely.Point(x, y)):
            break
    return x, y


def local_figure(slide: Slide, kinds: Kinds, path: Path, seed: int) -> Path:
    """Six finest-resolution patches from inside tumour nests and six from inside mimics."""
    plt = pyplot()
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(2, 6, figsize=(9, 3.4), dpi=100)
    for row, kind in enumerate(("tumour", "mimic")):
        polys = sorted(kinds.get(kind, []), key=lambda p: -p.area)
        for j in range(6):
            poly = polys[j % len(polys)].buffer(-PATCH / 2 * 1.5)
            if poly.is_empty:
                poly = polys[j % len(polys)]
            axes[row, j].imshow(slide.read(_point_inside(poly, rng), MPPS[0], PATCH), interpolation="nearest")
            axes[row, j].set_xticks([])
            axes[row, j].set_yticks([])
            if j == 0:
                axes[row, j].set_ylabel(kind, fontsize=9)
    fig.suptitle(f"{PATCH}-px patches at {MPPS[0]:g} mpp ({PATCH * MPPS[0]:g} um): tumour vs mimic", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, tight=True)


def make_figures(img_dir: Path, *, seed: int = 0, size_px: int = 4096) -> list[Path]:
    """Write the documentation PNGs into ``img_dir`` and return their paths."""
    img_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mrseg-synth-fig-") as tmp:
        root = Path(tmp) / "ds"
        generate(root, 1, seed, size_px=size_px)
        kinds = _layout(root, "synth_000")
        with Slide.open(root / "slides" / "synth_000.tif") as slide:
            return [
                thumbnail_figure(slide, kinds, img_dir / "synth_thumbnail.png"),
                concentric_figure(slide, kinds, img_dir / "synth_concentric.png"),
                local_figure(slide, kinds, img_dir / "synth_local.png", seed),
            ]


if __name__ == "__main__":  # pragma: no cover - documentation helper
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for written_path in make_figures(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img")):
        log.info("%s %d KB", written_path, written_path.stat().st_size // 1024)
