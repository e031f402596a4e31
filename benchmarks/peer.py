"""Head to head with TIAToolbox: whole-slide inference on the same slide, model size and tile grid (a benchmark).

The peer is ``../shared/bench/peer_tiatoolbox.py`` (TIAToolbox 2.1.3's ``SemanticSegmentor``, run
in its own virtual environment); read its docstring for what it times. Both sides get the same
synthetic BigTIFF slide (written once by the peer script's own generator), a U-Net of depth 4 and
base width 16 with randomised batch-norm statistics, 256-px tiles on a grid of stride 256 (mrseg
``overlap=0``), batch 8 and the same number of torch threads. Every run is a fresh process; the
repetitions are interleaved (peer, mrseg variants, peer, ...), so a shared machine's load hits all
sides alike, and each mrseg run is paired with the peer run of its repetition.

Timed on each side from "slide path handed over" to "every output on disk", after the model is
built and warmed up (two batches), exactly as the peer script times TIAToolbox:

- peer: ``SemanticSegmentor.run`` (tissue mask, patch grid, DataLoader, model, stitching, Zarr);
- mrseg: :func:`mrseg.inference.runner.run_slide` (slide open, tissue mask, tile loop, pyramidal
  TIFF, overlay PNG, JSON record), default settings but ``overlap=0`` and ``batch_size=8``.

The variants of mrseg are engines of this checkout (``--engines torch onnx``) and, with
``--today SRC``, the code at ``SRC`` (e.g. a worktree of main before this change) with its
defaults. Reported per variant: tiles/s (median and range over repetitions), the paired ratio to
the peer's tiles/s in the same repetition, model-only tiles/s and efficiency (tiles/s / model-only),
the phases of the mrseg record, peak RSS, and the one-off engine cost (the ONNX export on a
cold cache, measured in a first, untimed warm-up run of each variant).

Usage (about 2-3 minutes per repetition on an idle 2-core machine)::

    python benchmarks/peer.py --repeats 3 --out benchmarks/results/peer.json
    python benchmarks/peer.py --repeats 5 --today /path/to/main-worktree/src --engines torch onnx
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import as_the_command_line

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PEER_PYTHON = ROOT.parent / "peer-venv" / "bin" / "python"
DEFAULT_PEER_SCRIPT = ROOT.parent / "shared" / "bench" / "peer_tiatoolbox.py"


# ----------------------------------------------------------------------------------------- set-up
def make_slide(peer_python: Path, peer_script: Path, path: Path, size: int, mpp: float) -> Path:
    """The peer script's synthetic BigTIFF slide (tissue 0.6, JPEG tiles), written once."""
    if path.exists():
        return path
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "from peer_tiatoolbox import make_synthetic_slide;"
        "make_synthetic_slide(Path(sys.argv[2]), size=int(sys.argv[3]), mpp=float(sys.argv[4]), tile=256, seed=0)"
    )
    cmd = [str(peer_python), "-c", code, str(peer_script.parent), str(path), str(size), str(mpp)]
    subprocess.run(cmd, check=True, capture_output=True)
    return path


def make_checkpoint(path: Path, width: int, depth: int, tile: int, mpp: float, seed: int) -> Path:
    """mrseg's U-Net with the peer's randomised batch-norm statistics (so batch norm is not an identity)."""
    import torch
    from torch import nn

    from mrseg.core.input_spec import InputSpec
    from mrseg.models import create_model
    from mrseg.models.checkpoint import make_checkpoint as make
    from mrseg.models.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    net = create_model("unet", mpps=[mpp], width=width, depth=depth)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return save_checkpoint(path, make(net, InputSpec((mpp,), tile)))


# ----------------------------------------------------------------------------------- mrseg child
def mrseg_child(cfg: dict[str, Any]) -> dict[str, Any]:
    """One mrseg run in this (fresh) process: prepare and warm the model, time run_slide, then the model alone."""
    import dataclasses

    as_the_command_line()  # before torch is loaded, as `mrseg predict` does
    import torch

    from mrseg.inference.predictor import prepare_model
    from mrseg.inference.runner import run_slide
    from mrseg.inference.settings import PredictSettings
    from mrseg.models.checkpoint import load_checkpoint

    torch.set_num_threads(cfg["threads"])
    has_engine = "engine" in {f.name for f in dataclasses.fields(PredictSettings)}
    engine = {"engine": cfg["engine"]} if has_engine and cfg["engine"] else {}
    settings = PredictSettings(device="cpu", overlap=0.0, batch_size=cfg["batch_size"], **engine)
    t0 = time.perf_counter()
    ckpt = load_checkpoint(cfg["checkpoint"])
    model = prepare_model(ckpt, "cpu", "fp32", *([cfg["engine"]] if engine else []))
    init_s = time.perf_counter() - t0
    spec = ckpt.input_spec
    x = torch.rand(cfg["batch_size"], 1, 3, spec.size_px, spec.size_px)
    for _ in range(2):  # warm-up, as the peer script does
        model(x)
    t0 = time.perf_counter()
    run_slide(cfg["checkpoint"], cfg["slide"], cfg["out"], settings, model=model, checkpoint=ckpt, overwrite=True)
    wall = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    record = json.loads((Path(cfg["out"]) / f"{Path(cfg['slide']).stem}.json").read_text())
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _ in range(cfg["model_batches"]):
            torch.sigmoid(model(x))
    model_tps = cfg["model_batches"] * cfg["batch_size"] / (time.perf_counter() - t0)
    tiles = int(record["tiles"]["total"])
    return {
        "tiles": tiles,
        "wall_s": wall,
        "tiles_per_s": tiles / wall,
        "model_only_tiles_per_s": model_tps,
        "efficiency": tiles / wall / model_tps,
        "engine_init_s": init_s,
        "export_s": getattr(model, "export_s", None),
        "timings": record["timings"],
        "peak_rss_mb": rss_mb,
    }


def run_mrseg(cfg: dict[str, Any], src: Path) -> dict[str, Any]:
    """:func:`mrseg_child` in a fresh interpreter whose ``mrseg`` comes from ``src``."""
    result = Path(cfg["out"]).with_suffix(".result.json")
    env = {**os.environ, "PYTHONPATH": str(src)}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--_mrseg", json.dumps({**cfg, "result": str(result)})],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise RuntimeError(f"mrseg run {cfg['tag']} failed (rc {proc.returncode})")
    out = json.loads(result.read_text())
    out["process_s"] = time.perf_counter() - t0
    return out


def run_peer(peer_python: Path, peer_script: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """One TIAToolbox run through the peer script's own child mode (a fresh interpreter)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(peer_python), str(peer_script), "--_child", json.dumps(cfg)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise RuntimeError(f"peer run {cfg['tag']} failed (rc {proc.returncode})")
    out = json.loads(Path(cfg["result"]).read_text())
    out["process_s"] = time.perf_counter() - t0
    return out


# ---------------------------------------------------------------------------------------- report
def summarise(runs: list[dict[str, Any]], peer: list[dict[str, Any]]) -> dict[str, Any]:
    tps = [r["tiles_per_s"] for r in runs]
    ratios = [r["tiles_per_s"] / p["tiles_per_s"] for r, p in zip(runs, peer, strict=True)]
    return {
        "tiles": runs[0]["tiles"],
        "tiles_per_s_median": statistics.median(tps),
        "tiles_per_s_range": [min(tps), max(tps)],
        "wall_s_median": statistics.median(r["wall_s"] for r in runs),
        "ratio_to_peer_median": statistics.median(ratios),
        "ratio_to_peer_range": [min(ratios), max(ratios)],
        "ratio_to_peer_all": ratios,
        "efficiency_median": statistics.median(r["efficiency"] for r in runs if "efficiency" in r)
        if all("efficiency" in r for r in runs)
        else None,
        "peak_rss_mb_max": max(r.get("peak_rss_mb", r.get("peak_rss_main_mb", 0.0)) for r in runs),
        "process_s_median": statistics.median(r["process_s"] for r in runs),
    }


def print_table(summary: dict[str, dict[str, Any]], runs: dict[str, list[dict[str, Any]]], load: list[float]) -> None:
    head = f"{'side':<14}{'tiles':>6}{'tiles/s med':>12}{'[range]':>15}{'x peer (paired)':>17}{'[range]':>14}"
    head += f"{'eff':>6}{'wall s':>8}{'RSS MB':>8}"
    print(f"\nload average during the run: {min(load):.1f}-{max(load):.1f}")
    print(head)
    print("-" * len(head))
    for name, s in summary.items():
        rng = f"[{s['tiles_per_s_range'][0]:.2f}-{s['tiles_per_s_range'][1]:.2f}]"
        rr = f"[{s['ratio_to_peer_range'][0]:.2f}-{s['ratio_to_peer_range'][1]:.2f}]"
        eff = f"{s['efficiency_median']:.2f}" if s["efficiency_median"] is not None else "-"
        print(
            f"{name:<14}{s['tiles']:>6}{s['tiles_per_s_median']:>12.2f}{rng:>15}{s['ratio_to_peer_median']:>17.2f}"
            f"{rr:>14}{eff:>6}{s['wall_s_median']:>8.1f}{s['peak_rss_mb_max']:>8.0f}"
        )
    print("\nmrseg phases (median s): ", end="")
    for name, rs in runs.items():
        if name == "peer":
            continue
        keys = ("open_and_tissue_s", "tiles_s", "model_s", "write_tiff_s", "write_overlay_s")
        phases = {k: statistics.median(r["timings"].get(k, 0.0) for r in rs) for k in keys}
        print(f"\n  {name}: " + ", ".join(f"{k[:-2]} {v:.2f}" for k, v in phases.items()), end="")
    peer = runs["peer"]
    print(f"\n  peer: model busy {statistics.median(r['model_busy_s'] for r in peer):.2f}, wall/tile loop as above")


def report(
    args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]], load: list[float], warm: dict[str, Any]
) -> None:
    """Print the table of the repetitions so far and write the JSON."""
    for r in runs["peer"]:
        r["tiles"] = r["tiles_processed"]
    summary = {name: summarise(rs, runs["peer"]) for name, rs in runs.items()}
    print_table(summary, runs, load)
    result = {
        "benchmark": "peer",
        "command": " ".join(sys.argv),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "processor": platform.processor()},
        "load_average": load,
        "args": {k: str(v) for k, v in vars(args).items() if k != "_mrseg"},
        "summary": summary,
        "warm_up": warm,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nwritten {args.out}", flush=True)


# ------------------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON)
    p.add_argument("--peer-script", type=Path, default=DEFAULT_PEER_SCRIPT)
    p.add_argument("--peer-workers", type=int, default=2, help="TIAToolbox DataLoader workers")
    p.add_argument("--workdir", type=Path, default=None, help="slide, checkpoint and outputs (default: a temp dir)")
    p.add_argument("--slide", type=Path, default=None, help="use this slide instead of generating one")
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--mpp", type=float, default=0.5)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--engines", nargs="+", default=["torch", "onnx"], help="mrseg engines of this checkout")
    p.add_argument("--today", type=Path, default=None, help="src folder of the code to compare with (its defaults)")
    p.add_argument("--no-warm-up", action="store_true", help="skip the untimed first run of each variant")
    p.add_argument("--model-batches", type=int, default=6, help="batches of the model-only measurement")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "peer.json")
    p.add_argument("--_mrseg", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args._mrseg:
        cfg = json.loads(args._mrseg)
        Path(cfg["result"]).write_text(json.dumps(mrseg_child(cfg)))
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mrseg-peer-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MRSEG_CACHE_DIR", str(work / "cache"))
    slide = args.slide or make_slide(
        args.peer_python, args.peer_script, work / f"synthetic_{args.size}.tif", args.size, args.mpp
    )
    ckpt = make_checkpoint(work / "unet.pt", args.width, args.depth, 256, args.mpp, 0)
    variants: dict[str, tuple[Path, str | None]] = {f"mrseg {e}": (ROOT / "src", e) for e in args.engines}
    if args.today is not None:
        variants = {"mrseg today": (args.today, None), **variants}
    base = {"checkpoint": str(ckpt), "slide": str(slide), "threads": args.threads, "batch_size": args.batch_size}
    base["model_batches"] = args.model_batches
    peer_cfg = {
        "slide": str(slide), "mpp": args.mpp, "tile": 256, "stride": 256, "batch_size": args.batch_size,
        "base_width": args.width, "depth": args.depth, "threads": args.threads, "seed": 0,
        "workers": args.peer_workers, "mask": True,
    }  # fmt: skip
    warm: dict[str, Any] = {}
    for name, (src, engine) in {} if args.no_warm_up else variants.items():  # untimed: engine and page caches
        tag = name.replace(" ", "_")
        warm[name] = run_mrseg({**base, "engine": engine, "out": str(work / f"warm_{tag}"), "tag": tag}, src)
        print(f"[warm-up] {name}: engine init {warm[name]['engine_init_s']:.1f} s", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {"peer": [], **{name: [] for name in variants}}
    load = []
    for rep in range(args.repeats):
        load.append(os.getloadavg()[0])
        cfg = {**peer_cfg, "tag": f"r{rep}", "save_dir": str(work / "peer_out")}
        cfg["result"] = str(work / f"peer_{rep}.json")
        r = run_peer(args.peer_python, args.peer_script, cfg)
        runs["peer"].append(r)
        print(f"[{rep}] peer: {r['tiles_processed']} tiles {r['wall_s']:.1f} s {r['tiles_per_s']:.2f}/s", flush=True)
        for name, (src, engine) in variants.items():
            tag = f"{name.replace(' ', '_')}_r{rep}"
            r = run_mrseg({**base, "engine": engine, "out": str(work / tag), "tag": tag}, src)
            runs[name].append(r)
            print(f"[{rep}] {name}: {r['tiles']} tiles {r['wall_s']:.1f} s {r['tiles_per_s']:.2f}/s", flush=True)
        report(args, runs, load, warm)  # after every repetition, so a stopped run still leaves its figures


if __name__ == "__main__":
    main()
