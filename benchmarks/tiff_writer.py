"""Pyramidal TIFF writing time versus map area, with the tissue fixed (a benchmark, not a test).

A probability map of ``H x W`` pixels that holds something only in one ``--block``-pixel square at its
centre (what a whole-slide prediction of a slide with little tissue gives) is written with
:func:`mrseg.wsi.tiff.write_pyramidal_tiff` (zlib, 256-px tiles), as ``mrseg predict`` writes its map.
The map says where it is blank (``region_is_fill``), as :class:`mrseg.inference.store` maps do, so
only the block's tiles are read and encoded.

Each write runs in a fresh process, from this checkout and, with ``--today SRC``, from another
checkout's ``src`` (the code to compare with), alternating which goes first, ``--rounds`` times.
The files of both are checked to be identical byte for byte. The table gives the median wall time
of each, their paired ratio, and the time per tile position (all levels) of this checkout; with
``--blocks``, more tissue in the same area shows what the tissue costs. Prints a table and writes JSON.

Example::

    python benchmarks/tiff_writer.py --today ../old/src --sizes 8192 65536 100000x200000 --rounds 3
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import answered_as_child, machine, ratio_summary, run_json_child, write_result

ROOT = Path(__file__).resolve().parents[1]


class BlockMap:
    """A ``uint8 (H, W)`` map, zero except a random ``block``-px square at its centre; says where it is zero."""

    fill_value = 0

    def __init__(self, height: int, width: int, block: int, seed: int = 0) -> None:
        self.shape, self.dtype, self.ndim = (height, width), np.dtype(np.uint8), 2
        y0, x0 = (height - block) // 2, (width - block) // 2
        self.box = (y0, y0 + block, x0, x0 + block)
        self.block = np.random.default_rng(seed).integers(0, 256, (block, block), dtype=np.uint8)

    def region_is_fill(self, y0: int, y1: int, x0: int, x1: int) -> bool:
        by0, by1, bx0, bx1 = self.box
        return y1 <= by0 or y0 >= by1 or x1 <= bx0 or x0 >= bx1

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        rows, cols = key
        y0, y1 = rows.start or 0, self.shape[0] if rows.stop is None else rows.stop
        x0, x1 = cols.start or 0, self.shape[1] if cols.stop is None else cols.stop
        out = np.zeros((y1 - y0, x1 - x0), np.uint8)
        by0, by1, bx0, bx1 = self.box
        iy0, iy1, ix0, ix1 = max(y0, by0), min(y1, by1), max(x0, bx0), min(x1, bx1)
        if iy0 < iy1 and ix0 < ix1:
            out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = self.block[iy0 - by0 : iy1 - by0, ix0 - bx0 : ix1 - bx0]
        return out


def parse_size(text: str) -> tuple[int, int]:
    """``"8192"`` -> (8192, 8192); ``"25000x50000"`` -> (25000, 50000) (height x width)."""
    h, _, w = text.partition("x")
    return int(h), int(w or h)


def child(cfg: dict[str, Any]) -> dict[str, Any]:
    """One write in this fresh process (``mrseg`` imported from ``cfg["src"]``): wall, CPU, the file's hash."""
    sys.path.insert(0, cfg["src"])
    from mrseg.wsi.pyramid_tiles import content_tiles, tile_grid
    from mrseg.wsi.tiff import pyramid_shapes, write_pyramidal_tiff

    h, w = cfg["size"]
    image = BlockMap(h, w, cfg["block"])
    with tempfile.TemporaryDirectory(prefix="mrseg-tiffbench-") as work:
        path = Path(work) / "map.tif"
        wall, cpu = time.perf_counter(), time.process_time()
        write_pyramidal_tiff(path, image, 2.0, tile=256, compression="zlib", downsample="mean")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    positions = sum(rows * cols for rows, cols in (tile_grid(s, 256) for s in pyramid_shapes(h, w, min_size=256)))
    block_tiles = content_tiles(image, 256)
    return {"wall_s": wall, "cpu_s": cpu, "sha256": digest, "positions": positions, "content_tiles": block_tiles}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["8192", "32768", "65536", "100000x200000"])
    p.add_argument("--blocks", type=int, nargs="+", default=[1536], help="edge of the non-blank square, map px")
    p.add_argument("--today", type=Path, help="another checkout's src folder to compare with")
    p.add_argument("--rounds", type=int, default=3, help="alternating fresh processes per side")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tiff_writer.json")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    if answered_as_child(args, child):
        return
    sides = {"now": str(ROOT / "src")}
    if args.today is not None:
        sides["today"] = str(args.today.resolve())
    rows: list[dict[str, Any]] = []
    for text in args.sizes:
        for block in args.blocks:
            size = parse_size(text)
            runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
            for r in range(args.rounds):
                order = list(sides) if r % 2 == 0 else list(sides)[::-1]
                for side in order:
                    cfg = {"src": sides[side], "size": size, "block": block}
                    runs[side].append(run_json_child(__file__, cfg, sides[side]))
            first = runs["now"][0]
            row: dict[str, Any] = {"size": list(size), "block": block, "positions": first["positions"]}
            row["content_tiles_level0"] = first["content_tiles"]
            row["wall_s"] = {side: statistics.median(x["wall_s"] for x in rs) for side, rs in runs.items()}
            row["cpu_s"] = {side: statistics.median(x["cpu_s"] for x in rs) for side, rs in runs.items()}
            row["us_per_position_now"] = 1e6 * row["wall_s"]["now"] / first["positions"]
            row["files_identical"] = len({x["sha256"] for rs in runs.values() for x in rs}) == 1
            if "today" in runs:
                ratios = [t["wall_s"] / n["wall_s"] for t, n in zip(runs["today"], runs["now"], strict=True)]
                row |= ratio_summary(ratios)
            row["runs"] = runs
            rows.append(row)
            print(f"[{text} block {block}] done, load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
    print(f"\npyramidal TIFF of a blank map with one square block (zlib, 256-px tiles), median of {args.rounds}")
    head = f"{'map px':>14} {'block':>6} {'positions':>9} {'content':>7} {'now s':>7} {'µs/pos':>6}"
    if "today" in sides:
        head += f" {'today s':>8} {'x':>5} {'[range]':>12}"
    print(head + "  same")
    for r in rows:
        line = f"{r['size'][0]:>7}x{r['size'][1]:<6} {r['block']:>6} {r['positions']:>9} {r['content_tiles_level0']:>7}"
        line += f" {r['wall_s']['now']:>7.3f} {r['us_per_position_now']:>6.2f}"
        if "today" in sides:
            lo, hi = r["ratio_range"]
            line += f" {r['wall_s']['today']:>8.3f} {r['ratio_median']:>5.2f} {f'[{lo:.2f}, {hi:.2f}]':>12}"
        print(line + f"  {r['files_identical']}")
    result = {"benchmark": "tiff_writer", "args": {k: str(v) for k, v in vars(args).items()}, "machine": machine()}
    write_result(args.out, result | {"rows": rows})


if __name__ == "__main__":
    main()
