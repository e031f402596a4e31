"""Tissue detection time on large thumbnails: this checkout against others, and on 1 or more threads.

:func:`mrseg.wsi.tissue.detect_tissue` runs on a generated 8 µm/px thumbnail (noisy grey glass with
pink tissue blobs, fat vacuoles in them and tissue crumbs beside them, a few pixels wide, for the
clean-up to fill and remove, black voids and blue pen strokes; the same pixels for every variant:
seeded) of each ``--sizes`` (``H`` or ``HxW`` thumbnail pixels), each variant in a fresh child
process, interleaved over ``--repeats`` rounds. Variants: this checkout on one thread (``threads 1``)
and on :data:`mrseg.wsi.tissue.TISSUE_THREADS` (``threads N``), and with ``--today SRC [SRC ...]`` the
code at each ``SRC`` (the ``src`` folder of e.g. a worktree of main before a change) with its defaults.
Every variant's mask must be the same bytes (checked). Prints a table of medians and ratios (against
the first variant) and writes JSON, with the pixels the clean-up changed. ``--no-holes`` leaves out
the vacuoles and crumbs (session 11's thumbnail, on which the clean-up changes almost nothing).

A 65536² px slide at 0.5 µm/px has a 4096² thumbnail; the 100,000 x 200,000 px slide of
``memory_scan.py`` at 0.5 µm/px a 6250 x 12500 one (78 Mpx); a CAMELYON16 scan of that many pixels at
0.243 µm/px about 3000 x 6000.

Example::

    python benchmarks/tissue.py --sizes 4096 3000x6000 6250x12500 --repeats 3 --today /tmp/base/src
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from common import machine, write_result

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import hashlib, json, resource, sys, time
import numpy as np
from mrseg.wsi import tissue

h, w, threads, holes = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
rng = np.random.default_rng(0)
rgb = np.full((h, w, 3), 226, dtype=np.uint8)
rgb += rng.integers(0, 14, (h, w, 3), dtype=np.uint8)
for _ in range(max(1, h * w // 400_000)):  # tissue blobs, about a fifth of the area
    cy, cx, r = rng.integers(0, h), rng.integers(0, w), int(rng.integers(20, 200))
    y0, y1, x0, x1 = max(0, cy - r), min(h, cy + r), max(0, cx - r), min(w, cx + r)
    yy, xx = np.ogrid[y0:y1, x0:x1]
    blob = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    colour = np.array([rng.integers(150, 215), rng.integers(60, 140), rng.integers(140, 200)], dtype=np.uint8)
    rgb[y0:y1, x0:x1][blob] = colour
if holes:  # fat vacuoles (glass inside tissue) and tissue crumbs on the glass, every few pixels wide
    for _ in range(h * w // 2_000):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), int(rng.integers(1, 8))
        y0, y1, x0, x1 = max(0, cy - r), min(h, cy + r + 1), max(0, cx - r), min(w, cx + r + 1)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        spot = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        if rgb[cy, cx, 1] < 150:
            rgb[y0:y1, x0:x1][spot] = (232, 232, 232)
        else:
            rgb[y0:y1, x0:x1][spot] = (190, 100, 170)
rgb[h // 3, :] = (30, 120, 200)  # a pen stroke
rgb[:, w // 5] = (10, 10, 10)  # a void
kwargs = {} if threads == "default" else {"threads": int(threads)}
t0 = time.perf_counter()
c0 = time.process_time()
mask = tissue.detect_tissue(rgb, 8.0, **kwargs)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({
    "seconds": wall,
    "changed_by_clean_up": int((mask != tissue.threshold_tissue(rgb, 8.0)).sum()),
    "cpu_seconds": cpu,
    "tissue": float(mask.mean()),
    "mask_sha1": hashlib.sha1(np.packbits(mask).tobytes()).hexdigest(),
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def parse_size(text: str) -> tuple[int, int]:
    """``H`` (square) or ``HxW`` thumbnail pixels."""
    h, _, w = text.partition("x")
    return int(h), int(w or h)


def run_child(src: Path, size: tuple[int, int], threads: str, holes: bool) -> dict[str, Any]:
    """One detection in a fresh interpreter with ``src`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(size[0]), str(size[1]), threads, "1" if holes else "0"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["4096", "3000x6000"], help="thumbnail px, H or HxW")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--today",
        type=Path,
        nargs="+",
        default=[],
        help="src folders of the code to compare with (their defaults), e.g. worktrees of main before a change",
    )
    ap.add_argument(
        "--no-holes",
        action="store_true",
        help="leave out the vacuoles and crumbs (the thumbnail of session 11: the clean-up has almost nothing to do)",
    )
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/tissue.json"))
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from mrseg.wsi.tissue import TISSUE_THREADS

    here = ROOT / "src"
    variants: dict[str, tuple[Path, str]] = {"threads 1": (here, "1"), f"threads {TISSUE_THREADS}": (here, "default")}
    before: dict[str, tuple[Path, str]] = {}
    for i, src in enumerate(args.today):
        before["today" if len(args.today) == 1 else f"today {i + 1}"] = (src.resolve(), "default")
    variants = {**before, **variants}
    rows = []
    for text in args.sizes:
        size = parse_size(text)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, (src, threads) in variants.items():
                runs[name].append(run_child(src, size, threads, not args.no_holes))
        hashes = {r["mask_sha1"] for rs in runs.values() for r in rs}
        if len(hashes) != 1:
            raise SystemExit(f"{text}: the variants' masks differ ({len(hashes)} different masks)")
        row: dict[str, Any] = {
            "size": list(size),
            "mpx": size[0] * size[1] / 1e6,
            "tissue": runs["threads 1"][0]["tissue"],
            "changed_by_clean_up": runs["threads 1"][0]["changed_by_clean_up"],
        }
        for name, rs in runs.items():
            row[name] = {
                "seconds": [r["seconds"] for r in rs],
                "median_s": statistics.median(r["seconds"] for r in rs),
                "cpu_median_s": statistics.median(r["cpu_seconds"] for r in rs),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            }
        rows.append(row)
    names = list(variants)
    base = names[0]
    print(
        f"{'thumbnail px':>14} {'Mpx':>6} "
        + " ".join(f"{n + ' s':>12}" for n in names)
        + " "
        + " ".join(f"{n + ' x':>12}" for n in names[1:])
        + f"  (x: {base} s / variant s, medians)"
    )
    for row in rows:
        ratios = " ".join(f"{row[base]['median_s'] / row[n]['median_s']:11.2f}x" for n in names[1:])
        print(
            f"{row['size'][0]:>6} x {row['size'][1]:<5} {row['mpx']:6.1f} "
            + " ".join(f"{row[n]['median_s']:12.2f}" for n in names)
            + f" {ratios}"
        )
    sys.stdout.flush()
    write_result(
        args.out,
        {
            "machine": machine(),
            "repeats": args.repeats,
            "today": [str(t) for t in args.today],
            "holes": not args.no_holes,
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
