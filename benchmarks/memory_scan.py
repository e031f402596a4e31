"""Peak memory and output-writing time versus slide area, with the tissue held fixed (a benchmark).

Each slide is mostly blank (a uniform background) with the same square block of H&E-like texture at
its centre, so the tiles the model sees stay about the same while the slide area grows from 8192^2
px to CAMELYON size (about 100,000 x 200,000 px). The slides are written by mrseg's own pyramid
writer from a sparse image (blank tiles encoded once and shared), so even the largest costs
seconds and a few MB on disk.

For each slide a fresh child process runs :func:`mrseg.inference.runner.run_slide` (slide open,
tissue mask, tile loop, pyramidal probability TIFF, overlay PNG, JSON record; default settings but
``overlap=0``) with a tiny U-Net, and reports tiles, wall time, seconds per tile, the phases of the
record (TIFF writing among them), output bytes on disk and peak RSS. The table gives each slide's
RSS and TIFF time relative to the first (smallest) slide of the same run.

Usage::

    python benchmarks/memory_scan.py                                   # 8k, 16k, 32k, 64k, CAMELYON size
    python benchmarks/memory_scan.py --sizes 8192 16384 32768 --out /tmp/scan.json
    python benchmarks/memory_scan.py --sizes 8192 100000x200000        # HEIGHTxWIDTH also accepted
    python benchmarks/memory_scan.py --slide-mpp 0.243 --sizes 16384 100000x200000   # CAMELYON16's mpp
    python benchmarks/memory_scan.py --block-offset 2048 --repeats 3 --sizes 8192 65536   # same tiles, 3 runs

A slide's physical area, not its pixel count, sets the size of the tissue thumbnail (8 µm/px):
100,000 x 200,000 px at 0.5 µm/px is 50 x 100 mm, larger than a glass slide, while a CAMELYON16
scan of that many pixels at 0.243 µm/px is 24 x 49 mm.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BACKGROUND = 240


class SparseSlide:
    """``(H, W, 3)`` uint8 array-like: background everywhere but a ``block``-px textured square.

    The square lies at the centre, or with its top-left corner at level-0 pixel ``(offset, offset)``.

    It has ``region_is_fill`` and ``fill_value``, so the pyramid writer reads only the textured tiles.
    """

    def __init__(self, height: int, width: int, block: int, seed: int = 0, offset: int | None = None) -> None:
        self.shape = (height, width, 3)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3
        self.fill_value = BACKGROUND
        if offset is None:  # the centre, on the 256-px grid
            self.y0, self.x0 = (height - block) // 2 // 256 * 256, (width - block) // 2 // 256 * 256
        else:
            self.y0 = self.x0 = offset
        self.y1, self.x1 = self.y0 + block, self.x0 + block
        rng = np.random.default_rng(seed)
        noise = rng.integers(0, 70, (block, block), dtype=np.int16)
        tex = np.stack([215 - noise, 130 - noise, 195 - noise // 2], axis=-1)
        tex[rng.random((block, block)) < 0.04] = (90, 50, 140)
        self.block = np.clip(tex, 0, 255).astype(np.uint8)

    def region_is_fill(self, y0: int, y1: int, x0: int, x1: int) -> bool:
        return y1 <= self.y0 or y0 >= self.y1 or x1 <= self.x0 or x0 >= self.x1

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        ys, xs = key
        y0, y1, _ = ys.indices(self.shape[0])
        x0, x1, _ = xs.indices(self.shape[1])
        out = np.full((y1 - y0, x1 - x0, 3), BACKGROUND, np.uint8)
        iy0, iy1, ix0, ix1 = max(y0, self.y0), min(y1, self.y1), max(x0, self.x0), min(x1, self.x1)
        if iy1 > iy0 and ix1 > ix0:
            part = self.block[iy0 - self.y0 : iy1 - self.y0, ix0 - self.x0 : ix1 - self.x0]
            out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = part
        return out


def parse_size(text: str) -> tuple[int, int]:
    """``N`` (square) or ``HEIGHTxWIDTH`` in level-0 pixels."""
    h, _, w = text.lower().partition("x")
    return int(h), int(w or h)


def make_slide(path: Path, height: int, width: int, block: int, mpp: float = 0.5, offset: int | None = None) -> float:
    """Write the sparse slide (level 0 at ``mpp`` µm/px) once; seconds taken (0 when it already existed)."""
    from mrseg.wsi.tiff import write_pyramidal_tiff

    if path.exists():
        return 0.0
    t0 = time.perf_counter()
    write_pyramidal_tiff(path, SparseSlide(height, width, block, offset=offset), mpp, compression="jpeg", quality=85)
    return time.perf_counter() - t0


def make_checkpoint(path: Path, width: int, depth: int) -> Path:
    import torch

    from mrseg.core.input_spec import InputSpec
    from mrseg.models import create_model
    from mrseg.models.checkpoint import make_checkpoint as make
    from mrseg.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    net = create_model("unet", mpps=[0.5], width=width, depth=depth)
    return save_checkpoint(path, make(net, InputSpec((0.5,), 256)))


def child(cfg: dict[str, Any]) -> dict[str, Any]:
    """One run in this fresh process (so peak RSS is this slide's)."""
    import torch

    from mrseg.inference.runner import run_slide
    from mrseg.inference.settings import PredictSettings

    torch.set_num_threads(cfg["threads"])
    settings = PredictSettings(device="cpu", overlap=0.0, batch_size=cfg["batch_size"])
    t0 = time.perf_counter()
    result = run_slide(cfg["checkpoint"], cfg["slide"], cfg["out"], settings, overwrite=True)
    wall = time.perf_counter() - t0
    record = json.loads((Path(cfg["out"]) / f"{Path(cfg['slide']).stem}.json").read_text())
    out_bytes = sum(f.stat().st_size for f in Path(cfg["out"]).rglob("*") if f.is_file())
    return {
        "tiles": result.tiles,
        "wall_s": wall,
        "s_per_tile": wall / max(result.tiles, 1),
        "timings": record["timings"],
        "output_mb": out_bytes / 2**20,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_child(cfg: dict[str, Any]) -> dict[str, Any]:
    result = Path(cfg["out"] + ".result.json")
    cmd = [sys.executable, __file__, "--_child", json.dumps({**cfg, "result": str(result)})]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise RuntimeError(f"run on {cfg['slide']} failed (rc {proc.returncode})")
    return json.loads(result.read_text())


def print_table(rows: list[dict[str, Any]]) -> None:
    """One line per slide size: the median run's figures, peak RSS as median [min-max] over the repeats."""
    sizes = list(dict.fromkeys((r["height"], r["width"]) for r in rows))
    by_size = {size: [r for r in rows if (r["height"], r["width"]) == size] for size in sizes}
    first_rss = statistics.median(r["peak_rss_mb"] for r in by_size[sizes[0]])
    first_tiff = max(statistics.median(r["timings"].get("write_tiff_s", 0.0) for r in by_size[sizes[0]]), 1e-9)
    head = f"{'slide (HxW)':>16}{'Gpx':>7}{'tiles':>7}{'runs':>5}{'wall s':>8}{'tissue s':>9}{'TIFF s':>8}"
    head += f"{'overlay s':>10}{'out MB':>8}{'RSS MB':>8}{'RSS range':>11}{'RSS x':>7}{'TIFF x':>8}"
    print("\n" + head + "\n" + "-" * len(head))
    for (h, w), runs in by_size.items():
        med = {k: statistics.median(r["timings"].get(k, 0.0) for r in runs) for k in runs[0]["timings"]}
        rss = [r["peak_rss_mb"] for r in runs]
        tiff = med.get("write_tiff_s", 0.0)
        print(
            f"{h:>8}x{w:<7}{h * w / 1e9:>7.2f}{runs[0]['tiles']:>7}{len(runs):>5}"
            f"{statistics.median(r['wall_s'] for r in runs):>8.1f}{med.get('open_and_tissue_s', 0.0):>9.2f}"
            f"{tiff:>8.2f}{med.get('write_overlay_s', 0.0):>10.2f}{runs[0]['output_mb']:>8.1f}"
            f"{statistics.median(rss):>8.0f}{f'{min(rss):.0f}-{max(rss):.0f}':>11}"
            f"{statistics.median(rss) / first_rss:>7.2f}{tiff / first_tiff:>8.2f}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["8192", "16384", "32768", "65536", "100000x200000"])
    p.add_argument("--block", type=int, default=3072, help="edge of the textured square (px, multiple of 256)")
    p.add_argument(
        "--block-offset",
        type=int,
        default=None,
        help="level-0 px of the square's top-left corner on every slide (default: the centre); the same "
        "offset gives every slide the same tiles and read chunks, so only the area differs",
    )
    p.add_argument(
        "--slide-mpp",
        type=float,
        default=0.5,
        help="level-0 µm/px of the slides (CAMELYON16 scans: 0.243; the model reads at 0.5)",
    )
    p.add_argument("--repeats", type=int, default=1, help="runs per slide (peak RSS varies by some 30 MB run to run)")
    p.add_argument("--width", type=int, default=8, help="U-Net base width")
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", type=Path, default=None, help="slides and outputs (default: a temp dir)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "memory_scan.json")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args._child:
        cfg = json.loads(args._child)
        Path(cfg["result"]).write_text(json.dumps(child(cfg)))
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mrseg-scan-"))
    work.mkdir(parents=True, exist_ok=True)
    ckpt = make_checkpoint(work / "unet.pt", args.width, args.depth)
    rows, load = [], []
    for text in args.sizes:
        h, w = parse_size(text)
        at = "" if args.block_offset is None else f"_at{args.block_offset}"
        slide = work / f"sparse_{h}x{w}_{args.slide_mpp:g}mpp{at}.tif"
        gen_s = make_slide(slide, h, w, args.block, args.slide_mpp, args.block_offset)
        load.append(os.getloadavg()[0])
        cfg = {"checkpoint": str(ckpt), "slide": str(slide), "out": str(work / f"out_{h}x{w}{at}")}
        for repeat in range(args.repeats):
            r = run_child({**cfg, "threads": args.threads, "batch_size": args.batch_size})
            r |= {"height": h, "width": w, "slide_mpp": args.slide_mpp, "slide_write_s": gen_s, "repeat": repeat}
            r["slide_mb"] = slide.stat().st_size / 2**20
            rows.append(r)
            print(f"{h}x{w}: {r['tiles']} tiles, {r['wall_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    print_table(rows)
    print(f"load average during the run: {min(load):.1f}-{max(load):.1f}")
    result = {
        "benchmark": "memory_scan",
        "command": " ".join(sys.argv),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "processor": platform.processor()},
        "load_average": load,
        "args": {k: str(v) for k, v in vars(args).items() if k != "_child"},
        "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
