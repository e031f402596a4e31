"""Whole-slide inference benchmark: pipeline efficiency, read amplification and peak memory.

For each model (U-Net, MRN with J=4) and slide size, a fresh child process runs
:func:`mrseg.inference.runner.run_slide` on a generated slide (slide open -> pyramidal TIFF, overlay and
JSON written) with default settings, and the bare model on in-memory tensors of the same batch
shape. Reported per run:

- ``efficiency`` = end-to-end tiles/s / model-only tiles/s (target >= 0.85); ``tile_phase_efficiency``
  the same for the tile loop alone (read -> model -> merge), without the fixed per-slide costs.
- ``model_busy`` = seconds the model ran inside the loop / end-to-end seconds (the share of the run
  the model was computing, the peer's "model busy" figure). It does not depend on a separate
  model-only measurement, so it is the steadier figure on a VM whose speed drifts between minutes;
  ``efficiency`` is about ``model_busy`` x (model rate in the loop / model rate alone).
- ``read_amp`` = pixels read from the slide (``Slide.pixels_read``, all levels) / pixels of the
  union of the tiles' fields of view at each level (what any reader must decode at least);
  ``naive_amp`` is the same ratio for reading every tile's J patches separately.
- ``peak_rss_mb``: peak resident memory of the child process (torch, model and pipeline).

Usage::

    python benchmarks/inference.py                       # 16384 and 24576 px slides (slow on CPU)
    python benchmarks/inference.py --sizes 2048 4096 --tile 128 --width 16   # quick CPU run
    python benchmarks/inference.py --sizes 4096 8192 --repeats 5   # medians of 5 interleaved children

With ``--repeats N`` every configuration runs in N fresh children, interleaved (all configurations,
then all again), and the table shows each one's medians and the efficiency's range: the model's own
speed drifts between minutes on a shared VM, which one child per configuration cannot tell from a
pipeline cost.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import as_the_command_line

MODELS = {"unet": ("unet", (0.5,)), "mrn": ("mrn_bilinear", (0.5, 1.0, 2.0, 4.0))}


class ProceduralSlide:
    """Array-like ``(H, W, 3)`` uint8 H&E-like texture generated strip by strip (nothing held in memory)."""

    def __init__(self, size: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.shape = (size, size, 3)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3
        noise = rng.integers(0, 70, (512, 512), dtype=np.int16)
        nuclei = rng.random((512, 512)) < 0.04
        base = np.stack([215 - noise, 130 - noise, 195 - noise // 2], axis=-1)
        base[nuclei] = (90, 50, 140)
        self.texture = np.clip(base, 0, 255).astype(np.uint8)

    def __getitem__(self, key: Any) -> np.ndarray:
        rows = key[0] if isinstance(key, tuple) else key
        y0, y1, _ = rows.indices(self.shape[0])
        ys = np.arange(y0, y1) % 512
        xs = np.arange(self.shape[1]) % 512
        strip = self.texture[ys][:, xs]
        # slow variation so tiles differ (and JPEG has something to encode)
        shade = (np.sin(np.arange(y0, y1) / 700.0)[:, None] * 20).astype(np.int16)
        return np.clip(strip.astype(np.int16) + shade[..., None], 0, 255).astype(np.uint8)


def make_slide(path: Path, size: int) -> Path:
    from mrseg.wsi.tiff import write_pyramidal_tiff

    if not path.exists():
        t0 = time.perf_counter()
        write_pyramidal_tiff(path, ProceduralSlide(size), 0.5, compression="jpeg", quality=85)
        print(f"  generated {path.name} ({size} px) in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


def make_checkpoint(path: Path, model: str, tile: int, width: int, depth: int) -> Path:
    import torch

    from mrseg.core.input_spec import InputSpec
    from mrseg.models import create_model
    from mrseg.models.checkpoint import make_checkpoint as make
    from mrseg.models.checkpoint import save_checkpoint

    name, mpps = MODELS[model]
    torch.manual_seed(0)
    net = create_model(name, mpps=list(mpps), width=width, depth=depth)
    return save_checkpoint(path, make(net, InputSpec(mpps, tile)))


def _union_pixels(tiling: Any, mpps: tuple[float, ...], tile: int, dims: tuple[int, int], slide_mpp: float) -> int:
    """Pixels of the union of all tiles' fields of view at each level's own resolution (clipped to the slide)."""
    total = 0
    for m in mpps:
        f = slide_mpp / m  # level pixels per level-0 pixel
        w, h = int(np.ceil(dims[0] * f)), int(np.ceil(dims[1] * f))
        grid = np.zeros((h, w), bool)
        half = tile / 2
        for cx, cy in tiling.centers_l0() * f:
            x0, y0 = max(0, int(np.floor(cx - half))), max(0, int(np.floor(cy - half)))
            x1, y1 = min(w, int(np.ceil(cx + half))), min(h, int(np.ceil(cy + half)))
            if x1 > x0 and y1 > y0:
                grid[y0:y1, x0:x1] = True
        total += int(grid.sum())
    return total


def child(args: argparse.Namespace) -> None:
    """One measurement in a fresh process (so peak RSS is this run's)."""
    as_the_command_line()  # before torch is loaded, as `mrseg predict` does
    import torch

    from mrseg.core.memory import keep_freed_heap
    from mrseg.inference.predictor import prepare_model
    from mrseg.inference.runner import run_slide
    from mrseg.inference.settings import PredictSettings
    from mrseg.inference.splitter import make_tiling, tissue_filter
    from mrseg.models.checkpoint import load_checkpoint
    from mrseg.wsi.slide import Slide
    from mrseg.wsi.tissue import tissue_mask

    if args.threads:
        torch.set_num_threads(args.threads)
    # the heap setting the tile loop makes (predict_slide), made before the model-only figure too: else
    # that figure pays glibc's page faults on every batch and the loop, which does not, looks efficient
    keep_freed_heap()
    ckpt = load_checkpoint(args.checkpoint)
    spec = ckpt.input_spec
    settings = PredictSettings(
        device=args.device, batch_size=args.batch_size, chunk_tiles=args.chunk_tiles[0], loader_nice=args.loader_nice[0]
    )
    model = prepare_model(ckpt, args.device)

    def model_only(n_batches: int) -> float:
        x = torch.randn(args.batch_size, len(spec.mpps), 3, spec.size_px, spec.size_px).to(args.device)
        with torch.inference_mode():
            model(x)  # warm-up
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(n_batches):
                out = torch.sigmoid(model(x)).float().cpu()
            del out
        return n_batches * args.batch_size / (time.perf_counter() - t0)

    n_batches = args.model_batches
    before = model_only(n_batches)
    t0 = time.perf_counter()
    result = run_slide(args.checkpoint, args.slide, args.outdir, settings, overwrite=True)
    e2e_s = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    after = model_only(n_batches)
    record = json.loads((Path(args.outdir) / f"{Path(args.slide).stem}.json").read_text())
    with Slide.open(args.slide) as slide:
        dims, slide_mpp = slide.dimensions, slide.mpp
        tm = tissue_mask(slide, settings.tissue_settings(ckpt.tissue))
    tiling = make_tiling(
        dims,
        slide_mpp,
        spec.mpps[0],
        spec.size_px,
        settings.overlap,
        settings.chunk_tiles,
        tissue_filter(tm),
    )
    assert tiling.n_tiles == result.tiles, (tiling.n_tiles, result.tiles)
    needed = _union_pixels(tiling, spec.mpps, spec.size_px, dims, slide_mpp)
    model_tps = (before + after) / 2
    out = {
        "tiles": result.tiles,
        "e2e_s": e2e_s,
        "e2e_tiles_per_s": result.tiles / e2e_s,
        "model_tiles_per_s": model_tps,
        "model_tiles_per_s_before_after": [before, after],
        "efficiency": result.tiles / e2e_s / model_tps,
        # the tile loop alone (read -> model -> merge), without the fixed per-slide costs
        # (open, tissue mask, TIFF, overlay) that large slides amortise
        "tile_phase_efficiency": result.tiles / record["timings"]["tiles_s"] / model_tps,
        "model_busy": record["timings"]["model_s"] / e2e_s,
        "pixels_read": record["pixels_read"],
        "pixels_needed": needed,
        "read_amp": record["pixels_read"] / needed,
        "naive_amp": result.tiles * len(spec.mpps) * spec.size_px**2 / needed,
        "peak_rss_mb": rss_mb,
        "timings": record["timings"],
    }
    Path(args.result).write_text(json.dumps(out))


KEY = ("model", "size", "chunk_tiles", "loader_nice")
MEDIANS = (
    "e2e_tiles_per_s",
    "model_tiles_per_s",
    "efficiency",
    "tile_phase_efficiency",
    "model_busy",
    "read_amp",
    "peak_rss_mb",
)


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration: medians over its repetitions, and the efficiency's min-max."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in KEY), []).append(r)
    summary = []
    for key, runs in groups.items():
        eff = [r["efficiency"] for r in runs]
        row = dict(zip(KEY, key, strict=True))
        row |= {"tiles": runs[0]["tiles"], "naive_amp": runs[0]["naive_amp"], "repeats": len(runs)}
        row |= {name: float(np.median([r[name] for r in runs])) for name in MEDIANS}
        row["efficiency_range"] = [min(eff), max(eff)]
        row["efficiency_all"] = eff
        summary.append(row)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16384, 24576], help="slide edges (px at 0.5 mpp)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--chunk-tiles", type=int, nargs="+", default=[8], help="variants of chunk edge in tiles")
    parser.add_argument("--loader-nice", type=int, nargs="+", default=[0], help="variants of loader niceness")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--model-batches", type=int, default=4)
    parser.add_argument(
        "--repeats", type=int, default=1, help="fresh children per configuration, interleaved; the table shows medians"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where slides are generated (kept)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/inference.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--slide", help=argparse.SUPPRESS)
    parser.add_argument("--outdir", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    import torch

    work = args.workdir or Path(tempfile.mkdtemp(prefix="mrseg-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU x{os.cpu_count()}"
    print(f"device {device_name}, tile {args.tile}, width {args.width}, depth {args.depth}, batch {args.batch_size}")
    configs = []
    for size in args.sizes:
        slide = make_slide(work / f"slide_{size}.tif", size)
        for model in args.models:
            ckpt = make_checkpoint(work / f"{model}.pt", model, args.tile, args.width, args.depth)
            for chunk in args.chunk_tiles:
                for nice in args.loader_nice:
                    configs.append((model, size, chunk, nice, slide, ckpt))
    rows = []
    # repetitions interleaved (config 1, 2, ..., then again): a drift of the machine's speed between
    # minutes touches every configuration alike; each child measures its own model-only figure
    for rep in range(args.repeats):
        for model, size, chunk, nice, slide, ckpt in configs:
            tag = f"{model}_{size}_{chunk}_{nice}"
            result_path = work / f"result_{tag}_{rep}.json"
            cmd = [sys.executable, __file__, "--child", "--checkpoint", str(ckpt), "--slide", str(slide)]
            cmd += ["--outdir", str(work / f"out_{tag}"), "--result", str(result_path)]
            cmd += ["--device", args.device, "--batch-size", str(args.batch_size)]
            cmd += ["--threads", str(args.threads), "--chunk-tiles", str(chunk), "--loader-nice", str(nice)]
            cmd += ["--model-batches", str(args.model_batches)]
            subprocess.run(cmd, check=True)
            r = json.loads(result_path.read_text())
            r |= {"model": model, "size": size, "chunk_tiles": chunk, "loader_nice": nice, "repeat": rep}
            rows.append(r)
            print(
                f"[{rep + 1}/{args.repeats}] {model:5s} {size:6d} chunk {chunk:2d} nice {nice:2d}:"
                f" {r['tiles']:5d} tiles"
                f"  e2e {r['e2e_tiles_per_s']:7.2f}/s  model {r['model_tiles_per_s']:7.2f}/s"
                f"  eff {r['efficiency']:.3f} (tile loop {r['tile_phase_efficiency']:.3f},"
                f" model busy {r['model_busy']:.3f})"
                f"  read amp {r['read_amp']:.2f} (naive {r['naive_amp']:.1f})"
                f"  peak RSS {r['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    summary = summarise(rows)
    header = f"{'model':6s}{'size':>7s}{'chunk':>6s}{'nice':>5s}{'tiles':>7s}{'e2e/s':>9s}{'model/s':>9s}"
    header += f"{'eff':>7s}{'eff range':>14s}{'loop':>7s}{'busy':>7s}"
    header += f"{'read amp':>10s}{'naive':>7s}{'RSS MB':>8s}"
    print(f"\nmedians over {args.repeats} repetition(s) per row\n" + header)
    for r in summary:
        lo, hi = r["efficiency_range"]
        print(
            f"{r['model']:6s}{r['size']:7d}{r['chunk_tiles']:6d}{r['loader_nice']:5d}{r['tiles']:7d}{r['e2e_tiles_per_s']:9.2f}"
            f"{r['model_tiles_per_s']:9.2f}{r['efficiency']:7.3f}{f'{lo:.3f}-{hi:.3f}':>14s}{r['tile_phase_efficiency']:7.3f}"
            f"{r['model_busy']:7.3f}{r['read_amp']:10.2f}{r['naive_amp']:7.1f}"
            f"{r['peak_rss_mb']:8.0f}"
        )
    meta = {
        "device": device_name,
        "tile": args.tile,
        "width": args.width,
        "depth": args.depth,
        "batch_size": args.batch_size,
        "torch_threads": args.threads or torch.get_num_threads(),
        "repeats": args.repeats,
        "command": " ".join(sys.argv),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "summary": summary, "runs": rows}, indent=2))
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
