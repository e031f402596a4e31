"""Pyramidal TIFF writing time versus map area, with the tissue fixed (a benchmark, not a test).

A probability map of ``H x W`` pixels that holds something only in one ``--block``-pixel square at its
centre (what a whole-slide prediction of a slide with little tissue gives) is written with
:func:`mrseg.wsi.tiff.write_pyramidal_tiff` (zlib, 256-px tiles), as ``mrseg predict`` writes its map.
The map says where it is blank (``region_is_fill``), as :class:`mrseg.inference.store` maps do, so
only the block's tiles are read and encoded. Two ways of encoding, interleaved in one run:

* ``threads always``: every level on :data:`mrseg.wsi.tiff.ENCODE_THREADS` threads (the writer before
  the thread rule; ``THREADED_MIN_SHARE = 0``);
* ``default``: a level goes to the thread pool only when enough of its tiles hold pixels
  (:func:`mrseg.wsi.tiff.encode_threads`).

The files of both are checked to be identical byte for byte. Prints a table and writes JSON.

Example::

    python benchmarks/tiff_writer.py --sizes 8192 32768 65536 25000x50000 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import machine, write_result

import mrseg.wsi.tiff as tiff


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


def write_once(image: BlockMap, path: Path, min_share: float) -> tuple[float, float]:
    """Wall and CPU seconds of one write with ``THREADED_MIN_SHARE = min_share``."""
    saved = tiff.THREADED_MIN_SHARE
    tiff.THREADED_MIN_SHARE = min_share
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        tiff.write_pyramidal_tiff(path, image, 2.0, tile=256, compression="zlib", downsample="mean")
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        tiff.THREADED_MIN_SHARE = saved


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["8192", "32768", "65536", "25000x50000"])
    parser.add_argument("--block", type=int, default=1536, help="edge of the non-blank square, map pixels")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "tiff_writer.json")
    args = parser.parse_args(argv)
    variants = {"threads always": 0.0, "default": tiff.THREADED_MIN_SHARE}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mrseg-tiffbench-") as work:
        for text in args.sizes:
            h, w = parse_size(text)
            image = BlockMap(h, w, args.block)
            times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
            for _ in range(args.repeats):
                for name, share in variants.items():
                    times[name].append(write_once(image, Path(work) / f"{name.replace(' ', '_')}.tif", share))
            same = (Path(work) / "threads_always.tif").read_bytes() == (Path(work) / "default.tif").read_bytes()
            positions = sum(-(-s[0] // 256) * -(-s[1] // 256) for s in tiff.pyramid_shapes(h, w, min_size=256))
            walls = {name: statistics.median(t[0] for t in ts) for name, ts in times.items()}
            cpus = {name: statistics.median(t[1] for t in ts) for name, ts in times.items()}
            rows.append(
                {
                    "size": [h, w],
                    "tile_positions": positions,
                    "content_tiles_level0": tiff.content_tiles(image, 256),
                    "wall_s": walls,
                    "cpu_s": cpus,
                    "speed_up_wall": walls["threads always"] / walls["default"],
                    "files_identical": same,
                    "us_per_position_default": 1e6 * walls["default"] / positions,
                }
            )
            print(f"[{text}] done, load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
    print(
        f"\npyramidal TIFF of a blank map with one {args.block}-px block (zlib, 256-px tiles), "
        f"median of {args.repeats}, encode threads {tiff.ENCODE_THREADS}"
    )
    print(
        f"{'map px':>13} {'positions':>9} {'content':>7} {'always s':>9} {'default s':>9} {'x':>5} "
        f"{'cpu always':>10} {'cpu def.':>8} {'µs/pos':>6} same"
    )
    for r in rows:
        print(
            f"{r['size'][0]:>6}x{r['size'][1]:<6} {r['tile_positions']:>9} {r['content_tiles_level0']:>7} "
            f"{r['wall_s']['threads always']:>9.2f} {r['wall_s']['default']:>9.2f} {r['speed_up_wall']:>5.2f} "
            f"{r['cpu_s']['threads always']:>10.2f} {r['cpu_s']['default']:>8.2f} "
            f"{r['us_per_position_default']:>6.1f} {r['files_identical']}"
        )
    result = {
        "benchmark": "tiff_writer",
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine": machine(),
        "rows": rows,
    }
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
