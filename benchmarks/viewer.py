"""Benchmark: ``mrseg view`` tile latency (cold and warm, median and p95) and tiles/s under concurrent clients.

Serves a JPEG pyramidal slide (default 8192 x 8192 px at 0.25 mpp, the texture of
``concentric_read.py``; generated once, cached) with one prediction map at 1 um/px (smooth blobs,
``uint8``), started as a user does (``python -m mrseg view ... --port 0``, its own process), and
requests Deep Zoom tiles (256 px with the overlap) over HTTP/1.1 keep-alive connections on 127.0.0.1:

* ``cold``: each tile once, on a fresh server (every tile read from the file and encoded);
* ``warm``: the same tiles again (served from the tile cache);
* for slide tiles (JPEG) and overlay tiles (PNG, viridis, threshold 0.5) at the two finest levels;
* ``concurrent``: ``--clients`` threads, each with its own connection, fetching disjoint tiles
  (cold, fresh server), then all of them again (warm): tiles/s over the wall time.

Usage::

    python benchmarks/viewer.py [--slide-px 8192] [--tiles 200] [--clients 4] [--out FILE]

Targets (issue 13): warm median <= 20 ms, cold median <= 150 ms for a 256-px tile.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from common import machine, write_result
from concentric_read import SLIDE_MPP, make_slide

from mrseg.wsi.tiff import write_pyramidal_tiff

ROOT = Path(__file__).resolve().parents[1]
MAP_MPP = 1.0
TILE_PX, OVERLAP = 254, 1


def make_prediction(folder: Path, slide: Path, edge: int) -> Path:
    """``<stem>.tif`` (smooth probability blobs at 1 um/px) and the ``<stem>.json`` record mrseg predict writes."""
    record = folder / f"{slide.stem}.json"
    if record.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    side = round(edge * SLIDE_MPP / MAP_MPP)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    p = 0.5 + 0.5 * np.sin(9 * x) * np.cos(7 * y) * np.sin(3 * (x + y))
    values = np.rint(np.clip(p, 0, 1) * 255).astype(np.uint8)
    write_pyramidal_tiff(folder / f"{slide.stem}.tif", values, MAP_MPP, compression="zlib", downsample="mean")
    doc = {
        "slide": {"path": str(slide), "dimensions": [edge, edge], "mpp": SLIDE_MPP},
        "map": {"mpp": MAP_MPP, "shape": [side, side], "dtype": "uint8"},
        "outputs": {"map": f"{slide.stem}.tif", "record": record.name},
    }
    record.write_text(json.dumps(doc))
    return folder


class Server:
    """``python -m mrseg view`` in its own process; the URL it prints."""

    def __init__(self, slide: Path, pred: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        cmd = [sys.executable, "-m", "mrseg", "-q", "view", str(slide), f"--pred=m={pred}", "--port", "0"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if " at " not in line:
            raise RuntimeError(f"mrseg view did not start: {line!r}")
        url = urlsplit(line.split(" at ")[1].strip())
        self.host, self.port = url.hostname or "127.0.0.1", int(url.port or 80)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def fetch_all(server: Server, paths: list[str]) -> list[float]:
    """Milliseconds of each GET (one keep-alive connection), checking status 200."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
    out = []
    try:
        for path in paths:
            start = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            out.append((time.perf_counter() - start) * 1e3)
            if response.status != 200:
                raise RuntimeError(f"{path}: HTTP {response.status}")
    finally:
        conn.close()
    return out


def tile_paths(edge: int, count: int, overlay: bool) -> list[str]:
    """``count`` tiles from the middle of the two finest Deep Zoom levels (two thirds from the finest)."""
    max_level = int(np.ceil(np.log2(edge)))
    paths = []
    for level, share in ((max_level, 2 / 3), (max_level - 1, 1 / 3)):
        n = -(-(edge >> (max_level - level)) // TILE_PX)
        side = max(1, int(np.ceil(np.sqrt(count * share))))
        first = max(0, n // 2 - side // 2)
        cells = [(c, r) for r in range(first, min(n, first + side)) for c in range(first, min(n, first + side))]
        for c, r in cells[: round(count * share)]:
            if overlay:
                paths.append(f"/overlay/slide/m/map_files/{level}/{c}_{r}.png?cmap=viridis&threshold=0.5")
            else:
                paths.append(f"/dzi/slide_files/{level}/{c}_{r}.jpeg")
    return paths


def summary(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {
        "n": len(ms),
        "median_ms": statistics.median(ordered),
        "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "mean_ms": statistics.fmean(ordered),
    }


def concurrent(server: Server, paths: list[str], clients: int) -> dict[str, float]:
    """tiles/s of ``clients`` threads fetching ``paths`` split between them (each its own connection)."""
    shares = [paths[i::clients] for i in range(clients)]
    results: list[list[float]] = [[] for _ in range(clients)]

    def run(i: int) -> None:
        results[i] = fetch_all(server, shares[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    flat = [v for r in results for v in r]
    return {"clients": clients, "tiles": len(flat), "tiles_per_s": len(flat) / wall, **summary(flat)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slide-px", type=int, default=8192, help="Edge of the square slide (level-0 px).")
    parser.add_argument("--tiles", type=int, default=200, help="Tiles per measurement (of each kind).")
    parser.add_argument("--clients", type=int, default=4, help="Concurrent clients.")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "benchmarks" / "results" / "cache")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "viewer.json")
    args = parser.parse_args(argv)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    slide = make_slide(args.cache_dir / f"viewer_{args.slide_px}" / "slide.tif", args.slide_px)
    pred = make_prediction(args.cache_dir / f"viewer_{args.slide_px}" / "pred", slide, args.slide_px)
    rows: dict[str, Any] = {}
    for kind, overlay in (("slide", False), ("overlay", True)):
        paths = tile_paths(args.slide_px, args.tiles, overlay)
        server = Server(slide, pred)
        try:
            fetch_all(server, ["/api/catalog"])
            rows[f"{kind} cold"] = summary(fetch_all(server, paths))
            rows[f"{kind} warm"] = summary(fetch_all(server, paths))
        finally:
            server.stop()
        server = Server(slide, pred)
        try:
            rows[f"{kind} cold x{args.clients}"] = concurrent(server, paths, args.clients)
            rows[f"{kind} warm x{args.clients}"] = concurrent(server, paths, args.clients)
        finally:
            server.stop()
    print(f"{'tiles':<22}{'n':>5}{'median ms':>11}{'p95 ms':>9}{'tiles/s':>9}")
    for name, row in rows.items():
        rate = f"{row['tiles_per_s']:9.0f}" if "tiles_per_s" in row else f"{1e3 / row['mean_ms']:9.0f}"
        print(f"{name:<22}{row['n']:>5}{row['median_ms']:>11.1f}{row['p95_ms']:>9.1f}{rate}")
    result = {
        "benchmark": "viewer",
        "slide_px": args.slide_px,
        "slide_mpp": SLIDE_MPP,
        "map_mpp": MAP_MPP,
        "tile_px": TILE_PX + 2 * OVERLAP,
        "rows": rows,
        "machine": machine(),
        "command": "python benchmarks/viewer.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
