"""Benchmark the synthetic slide generator: seconds per slide and per stage, at several sizes.

Each size and render-thread count (1 vs 2 by default, compared side by side) runs in a fresh child
process (so its peak resident memory is its own) and generates ``--repeat`` slides at 0.5 mpp.
Stages: layout (geometry), render (class raster, texture, label mask) and write (pyramidal JPEG
slide, zlib mask, ASAP XML, layout GeoJSON). Prints a table and writes JSON (``--out``, default
``benchmarks/results/synth.json``).

    python benchmarks/synth.py [--sizes 2048 4096 8192] [--threads 1 2] [--repeat 1] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _run(size: int, repeat: int, seed: int, threads: int, queue: Any) -> None:
    from mrseg.synth.params import SynthParams
    from mrseg.synth.writer import generate_slide

    rows = []
    with tempfile.TemporaryDirectory(prefix="mrseg-bench-synth-") as tmp:
        out = Path(tmp)
        for sub in ("slides", "annotations", "masks", "layouts"):
            (out / sub).mkdir()
        for i in range(repeat):
            t0 = time.perf_counter()
            rec = generate_slide(out, f"s{i}", seed, i, (size, size), 0.5, SynthParams(), threads=threads)
            total = time.perf_counter() - t0
            size_mb = (out / rec.slide).stat().st_size / 1e6
            rows.append({**rec.seconds, "total": total, "slide_mb": size_mb})
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put({"rows": rows, "peak_rss_mb": peak_mb})


def measure(size: int, repeat: int, seed: int, threads: int) -> dict[str, Any]:
    """Generate ``repeat`` slides of ``size`` px in a child process; median seconds per stage."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run, args=(size, repeat, seed, threads, queue))
    proc.start()
    result = queue.get()
    proc.join()
    rows = result["rows"]
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    return {
        "size_px": size,
        "threads": threads,
        "mpx": size * size / 1e6,
        "repeat": repeat,
        **med,
        "peak_rss_mb": result["peak_rss_mb"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="render threads to compare")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "synth.json")
    args = parser.parse_args(argv)
    results = [measure(size, args.repeat, args.seed, t) for size in args.sizes for t in args.threads]
    header = f"{'size px':>8} {'threads':>7} {'Mpx':>6} {'layout s':>9} {'render s':>9} {'write s':>8} {'total s':>8}"
    header += f" {'s/Mpx':>6} {'speed-up':>8} {'slide MB':>9} {'peak MB':>8}"
    print(header)
    for r in results:
        base = next(b for b in results if b["size_px"] == r["size_px"])  # first thread count of this size
        r["s_per_mpx"] = r["total"] / r["mpx"]
        r["speedup_vs_first_threads"] = base["total"] / r["total"]
        print(
            f"{r['size_px']:>8} {r['threads']:>7} {r['mpx']:>6.1f} {r['layout']:>9.2f} {r['render']:>9.2f}"
            f" {r['write']:>8.2f} {r['total']:>8.2f} {r['s_per_mpx']:>6.3f} {r['speedup_vs_first_threads']:>8.2f}"
            f" {r['slide_mb']:>9.1f} {r['peak_rss_mb']:>8.0f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "synth",
        "mpp": 0.5,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": mp.cpu_count()},
        "results": results,
    }
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
