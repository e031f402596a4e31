"""Training throughput: full steps with real loading from synthetic slides vs compute on in-memory tensors.

For each model and worker count, measures samples/s of

* ``loaded``: the real training step of :mod:`mrseg.training.loop` (DataLoader with workers reading
  concentric patches + masks from pyramidal TIFFs, augmentation, ``InputSpec.to_tensor``, forward,
  loss + L2, backward, Adam step);
* ``in_memory``: the same forward/loss/backward/step on a fixed in-memory batch of the same shape.

The ratio ``loaded / in_memory`` says whether the loader keeps the model busy (target >= 0.8 with
the recipe's default number of workers). Prints a table and writes JSON.

``--demo-models`` measures instead what ``mrseg demo`` trains: the demo's recipe for those models
(``mrseg.demo.settings``: its packaged config plus the shared overrides, one torch thread, loading in
the trainer), ``--epochs`` whole epochs of :func:`mrseg.training.loop.train` (steps, validation,
checkpoints) in a fresh interpreter, samples/s = optimiser steps x batch / wall seconds of ``train``.
With ``--today SRC`` (the ``src`` folder of e.g. a worktree of main before a change) the same runs
with the code at ``SRC`` alternate with this checkout's, and the table gives each round's ratio
(this checkout / today); the final weights are compared too (same bytes: the change is speed only).
``--set KEY=VALUE`` changes the recipe of this checkout's runs only, so ``--today src --set
train.amp=bf16`` measures bf16 autocast against float32 with the same code (the weights then differ).

Usage::

    python benchmarks/training.py [--config synthetic_mrn_bilinear] [--steps 30] [--workers 0 1 2]
    python benchmarks/training.py --demo-models unet_2 mrn_bilinear --epochs 4 --rounds 3 --today /tmp/base/src
    python benchmarks/training.py --demo-models unet_2 mrn_bilinear --today src --set train.amp=bf16   # bf16 / fp32
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from mrseg.core.overrides import parse_overrides
from mrseg.models.inputs import to_tensor
from mrseg.training.config import load_config, update_config
from mrseg.training.epoch import make_loader
from mrseg.training.losses import SegmentationLoss, l2_penalty
from mrseg.training.sampling import EpochSampler, load_datasets
from mrseg.training.state import build_model, seed_everything


def _step(model, optimizer, criterion, x, y, lam):  # type: ignore[no-untyped-def]
    loss = criterion(model(x), y) + l2_penalty(model, lam)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def measure(config, steps: int, warmup: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    seed_everything(0)
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    train_ds, _ = load_datasets(config)
    model = build_model(config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    criterion = SegmentationLoss.for_labels(config.labels)
    spec = config.model.input_spec()
    b = config.train.batch_size
    sampler = EpochSampler((steps + warmup) * b)
    loader = make_loader(train_ds, sampler, config, torch.device("cpu"))
    it = iter(loader)
    first = next(it)
    x_mem, y_mem = to_tensor(first["patches"], spec), first["mask"]
    for _ in range(warmup - 1):
        batch = next(it)
        _step(model, optimizer, criterion, to_tensor(batch["patches"], spec), batch["mask"], config.train.l2)
    t0 = time.perf_counter()
    for batch in it:
        _step(model, optimizer, criterion, to_tensor(batch["patches"], spec), batch["mask"], config.train.l2)
    loaded = steps * b / (time.perf_counter() - t0)
    del it, loader
    t0 = time.perf_counter()
    for _ in range(steps):
        _step(model, optimizer, criterion, x_mem, y_mem, config.train.l2)
    in_memory = steps * b / (time.perf_counter() - t0)
    train_ds.close()
    return {"loaded": loaded, "in_memory": in_memory, "ratio": loaded / in_memory}


def demo_child(args: dict[str, Any]) -> None:
    """One demo-recipe training run in this interpreter; writes its result JSON to ``args["result"]``."""
    from mrseg.demo.settings import MODELS, default_settings
    from mrseg.demo.stages import model_config
    from mrseg.training.loop import train

    torch.set_num_threads(1)
    spec = next(m for m in MODELS if m.key == args["model"])
    defaults = default_settings()
    settings = default_settings(train={**defaults.train, "train.epochs": args["epochs"], **args["overrides"]})
    # the demo's own config of this model, on a generated data set split by the recipe (not a manifest)
    config = update_config(model_config(settings, spec, Path(args["data"]), progress=False), {"data.split": "auto"})
    t0 = time.perf_counter()
    result = train(config, Path(args["out"]), device="cpu", progress=False)
    wall = time.perf_counter() - t0
    digest = hashlib.sha256()
    for name, tensor in sorted(result.model.state_dict().items()):
        digest.update(name.encode() + tensor.detach().contiguous().numpy().tobytes())
    steps = config.train.epochs * config.train.steps_per_epoch
    samples_per_s = steps * config.train.batch_size / wall
    result_json = {"wall_s": wall, "samples_per_s": samples_per_s, "weights": digest.hexdigest()}
    Path(args["result"]).write_text(json.dumps(result_json))


def run_demo_child(
    model: str, src: Path, data: Path, epochs: int, tmp: Path, tag: str, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """:func:`demo_child` in a fresh interpreter whose ``mrseg`` comes from ``src``, with recipe ``overrides``."""
    out = tmp / f"{tag}-{model}"
    result_path = out.with_suffix(".json")
    args = {
        "model": model,
        "data": str(data),
        "epochs": epochs,
        "out": str(out),
        "result": str(result_path),
        "overrides": overrides or {},
    }
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.run(
        [sys.executable, __file__, "--_demo", json.dumps(args)], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise RuntimeError(f"{tag} {model} failed (rc {proc.returncode})")
    result: dict[str, Any] = json.loads(result_path.read_text())
    shutil.rmtree(out)  # the run folder this function had train() create
    return result


def demo_section(args: argparse.Namespace) -> None:
    """The ``--demo-models`` comparison (see the module docstring)."""
    from common import machine, ratio_summary, write_result

    here = Path(__file__).resolve().parents[1] / "src"
    variants = {"this": here} | ({"today": args.today.resolve()} if args.today else {})
    overrides = parse_overrides(args.overrides)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = args.data
        if data is None:
            from mrseg.synth import generate

            data = generate(tmp / "synth", args.slides, seed=0, size_px=2048, mpp=0.5)
        for r in range(args.rounds):
            for model in args.demo_models:
                got = {
                    tag: run_demo_child(model, src, data, args.epochs, tmp, tag, overrides if tag == "this" else None)
                    for tag, src in variants.items()
                }
                row = {"round": r, "model": model, **{f"{t}_samples_per_s": g["samples_per_s"] for t, g in got.items()}}
                if "today" in got:
                    row["ratio"] = got["this"]["samples_per_s"] / got["today"]["samples_per_s"]
                    row["same_weights"] = got["this"]["weights"] == got["today"]["weights"]
                rows.append(row)
                print(json.dumps(row), flush=True)
    print()
    header = ["this samples/s", "today samples/s", "ratio (median, range)", "same weights"]
    print(f"{'model':16s} {header[0]:>15s} {header[1]:>16s} {header[2]:>24s} {header[3]:>13s}")
    summary = []
    for model in args.demo_models:
        mine = [r for r in rows if r["model"] == model]
        this = statistics.median(r["this_samples_per_s"] for r in mine)
        entry: dict[str, Any] = {"model": model, "this_samples_per_s": this}
        line = f"{model:16s} {this:15.1f}"
        if args.today:
            ratios = [r["ratio"] for r in mine]
            entry |= {
                "today_samples_per_s": statistics.median(r["today_samples_per_s"] for r in mine),
                **ratio_summary(ratios),
                "same_weights": all(r["same_weights"] for r in mine),
            }
            line += (
                f" {entry['today_samples_per_s']:16.1f} {entry['ratio_median']:10.2f}x "
                f"[{min(ratios):.2f}-{max(ratios):.2f}] {entry['same_weights']!s:>13s}"
            )
        summary.append(entry)
        print(line)
    meta = {
        "machine": machine(),
        "epochs": args.epochs,
        "rounds": args.rounds,
        "today": str(args.today or ""),
        "this_overrides": overrides,
    }
    write_result(args.out, {"meta": meta, "summary": summary, "rounds": rows})


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--_demo":
        demo_child(json.loads(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", nargs="+", default=["synthetic_mrn_bilinear", "synthetic_unet"])
    parser.add_argument("--data", type=Path, default=None, help="existing data set (default: generate 4 slides)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="*", default=None, help="default: the config's num_workers")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "training.json")
    parser.add_argument("--demo-models", nargs="+", default=None, help="demo model keys (unet_2, mrn_bilinear...)")
    parser.add_argument("--epochs", type=int, default=4, help="--demo-models: epochs per run")
    parser.add_argument("--rounds", type=int, default=3, help="--demo-models: alternating rounds")
    parser.add_argument("--slides", type=int, default=8, help="--demo-models: synthetic slides generated")
    parser.add_argument("--today", type=Path, default=None, help="--demo-models: src folder of the code to compare")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="--demo-models: recipe override KEY=VALUE for this checkout's runs only (e.g. train.amp=bf16; "
        "with --today src, the same code with and without it)",
    )
    args = parser.parse_args()
    if args.demo_models:
        demo_section(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            from mrseg.synth import generate

            data = generate(Path(tmp) / "synth", 4, seed=0, size_px=2048, mpp=0.5)
        rows = []
        for name in args.config:
            base = update_config(load_config(name), {"data.path": str(data), "output.progress": False})
            for workers in args.workers if args.workers else [base.data.num_workers]:
                cfg = update_config(base, {"data.num_workers": workers})
                r = measure(cfg, args.steps, args.warmup)
                rows.append({"config": name, "workers": workers, "batch": cfg.train.batch_size, **r})
                print(
                    f"{name:26s} workers={workers}  loaded {r['loaded']:7.1f} samples/s  "
                    f"in-memory {r['in_memory']:7.1f} samples/s  ratio {r['ratio']:.2f}",
                    flush=True,
                )
    print()
    print(f"{'config':26s} {'workers':>7s} {'loaded/s':>9s} {'memory/s':>9s} {'ratio':>6s}")
    for r in rows:
        print(f"{r['config']:26s} {r['workers']:7d} {r['loaded']:9.1f} {r['in_memory']:9.1f} {r['ratio']:6.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1min": os.getloadavg()[0],
    }
    args.out.write_text(json.dumps({"meta": meta, "steps": args.steps, "results": rows}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
