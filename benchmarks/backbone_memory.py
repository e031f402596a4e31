"""Costs of the MRN over timm backbones for J = 1..4, and the figure of docs/models.md (a benchmark, not a test).

Profiles (on the ``meta`` device, so the numbers are exact and independent of the machine's load)
the U-Net encoder and every backbone of :data:`mrseg.models.backbones.BACKBONES` as
``mrn_bilinear`` for J = 1..4 (J = 1: the U-Net), with :func:`mrseg.models.profile.profile_catalog`
(what ``mrseg models --backbones`` prints). Fits ``saved = a + b J`` over J = 2..4 and J = 1..4 per
encoder (is the memory still linear in J?), writes the rows and fits as JSON and draws
``docs/img/backbone_mrn.png``: (a) what is cropped at each stage of a stride-4..32 backbone,
(b) saved-tensor memory per sample versus J. Needs timm (``pip install "mrseg[timm]"``).

Example::

    nice -n 10 python benchmarks/backbone_memory.py --out benchmarks/results/backbone_memory.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.patches import Rectangle

from mrseg.core.figures import pyplot, save_figure
from mrseg.models.backbones import BACKBONES
from mrseg.models.profile import profile_catalog

MPPS = [0.5, 1.0, 2.0, 4.0]


def linear_fit(js: list[int], values: list[float]) -> dict[str, float]:
    """Least-squares ``value = intercept + slope J`` and its R^2."""
    slope, intercept = np.polyfit(js, values, 1)
    predicted = intercept + slope * np.asarray(js)
    residual = float(np.sum((np.asarray(values) - predicted) ** 2))
    total = float(np.sum((np.asarray(values) - np.mean(values)) ** 2)) or 1.0
    return {"intercept": float(intercept), "slope": float(slope), "r2": 1.0 - residual / total}


def draw_crops(ax: Any, strides: tuple[int, ...] = (4, 8, 16), gamma: int = 2, size: int = 256) -> None:
    """Per stage: the context branch's map (gamma x the field of view) and its centred crop of 1 / gamma."""
    x = 0.0
    for stride in strides:
        side = size / stride  # map pixels, the same in both branches
        ax.add_patch(Rectangle((x, 0), side, side, fill=False, lw=1.5, color="tab:blue"))
        inner = side / gamma
        offset = (side - inner) / 2
        ax.add_patch(Rectangle((x + offset, offset), inner, inner, color="tab:orange", alpha=0.5))
        ax.text(x + side / 2, side + 3, f"stride {stride}\n{side:.0f} x {side:.0f} map", ha="center", fontsize=8)
        ax.text(x + side / 2, -6, f"crop {inner:.0f} x {inner:.0f}\n-> upscale x{gamma}", ha="center", fontsize=8)
        x += side + 12
    ax.set_xlim(-4, x)
    ax.set_ylim(-20, size / strides[0] + 18)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"(a) context branch (gamma = {gamma}), {size} px tile: centred crop at every stage", fontsize=9)


def draw_memory(ax: Any, rows: list[dict[str, Any]]) -> None:
    for encoder in dict.fromkeys(r["encoder"] for r in rows):
        mine = [r for r in rows if r["encoder"] == encoder]
        ax.plot([r["j"] for r in mine], [r["saved_bytes"] / 2**20 for r in mine], "o-", label=encoder)
    ax.set_xticks([1, 2, 3, 4])
    ax.set_xlabel("J (resolutions; J = 1 is the U-Net)")
    ax.set_ylabel("autograd saved tensors per sample (MiB)")
    ax.set_title("(b) training activation memory vs J", fontsize=9)
    ax.legend(fontsize=7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="tile edge in pixels")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/backbone_memory.json"))
    parser.add_argument("--figure", type=Path, default=Path("docs/img/backbone_mrn.png"))
    args = parser.parse_args()
    rows = profile_catalog(
        MPPS, args.size, encoders=("unet", *BACKBONES), per_j=True, width=args.width, depth=args.depth
    )
    rows = [r for r in rows if r["name"] in ("unet", "mrn_bilinear")]
    fits = {}
    for encoder in dict.fromkeys(r["encoder"] for r in rows):
        mine = [r for r in rows if r["encoder"] == encoder]
        saved = [r["saved_bytes"] / 2**20 for r in mine]
        fits[encoder] = {"j1_4": linear_fit([1, 2, 3, 4], saved), "j2_4": linear_fit([2, 3, 4], saved[1:])}
    print(f"{'encoder':16} " + " ".join(f"{'J=' + str(j):>26}" for j in (1, 2, 3, 4)) + "   R^2 (J=1..4, J=2..4)")
    for encoder, fit in fits.items():
        mine = [r for r in rows if r["encoder"] == encoder]
        cells = " ".join(
            f"{r['params'] / 1e6:6.2f}M {r['gflops']:6.1f}GF {r['saved_bytes'] / 2**20:6.0f}MiB" for r in mine
        )
        print(f"{encoder:16} {cells}   {fit['j1_4']['r2']:.4f} {fit['j2_4']['r2']:.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"size": args.size, "mpps": MPPS, "rows": rows, "fits": fits}, indent=2) + "\n")
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.4, 1]})
    draw_crops(axes[0], size=args.size)
    draw_memory(axes[1], rows)
    fig.tight_layout()
    save_figure(fig, args.figure)
    print(f"wrote {args.out} and {args.figure}")


if __name__ == "__main__":
    main()
