"""OpenMP wait policies: model-only tiles/s with libgomp's default spin, a short spin and passive (a benchmark).

libgomp reads its wait settings once, when torch loads, so every figure is a fresh process: a U-Net
(width 16, depth 4, batch norm folded, channels-last, like the peer benchmark's) runs batches on
random inputs for ``--seconds`` after 3 warm-up batches, with ``--threads`` torch threads. The
configurations alternate within each round, so the machine's drift hits all alike. ``--load N``
starts N busy processes (pure Python loops) for the whole run: the "other jobs" of a shared machine.
Reported: tiles/s per configuration (median and range over rounds) and the ratio to the default
in the same round.

Usage::

    python benchmarks/openmp_wait.py --rounds 4                 # idle
    python benchmarks/openmp_wait.py --rounds 2 --load 3        # beside three busy processes
    python benchmarks/openmp_wait.py --tile 256 --batch 8
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_result

from mrseg.core.openmp import SPIN_COUNT, WAIT_VARIABLES

#: name -> environment of the child (on top of the parent's, with every wait variable removed).
CONFIGS: dict[str, dict[str, str]] = {
    "default": {},
    "short spin": {"GOMP_SPINCOUNT": str(SPIN_COUNT)},  # what the command line sets
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
}


def child(args: argparse.Namespace) -> None:
    import torch

    from mrseg.inference.predictor import prepare_for_inference
    from mrseg.models import create_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = prepare_for_inference(create_model("unet", mpps=[0.5], width=16, depth=4))
    x = torch.randn(args.batch, 1, 3, args.tile, args.tile)
    for _ in range(3):
        model(x)
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < args.seconds:
        model(x)
        n += 1
    print(json.dumps({"tiles_per_s": n * args.batch / (time.perf_counter() - t0)}))


def busy() -> None:
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--load", type=int, default=0, help="busy processes alongside")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/openmp_wait.json"))
    parser.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        child(args)
        return
    loaders = [mp.Process(target=busy, daemon=True) for _ in range(args.load)]
    for p in loaders:
        p.start()
    base = {k: v for k, v in os.environ.items() if k not in WAIT_VARIABLES}
    flags = ["--tile", str(args.tile), "--batch", str(args.batch), "--threads", str(args.threads)]
    rounds: list[dict[str, float]] = []
    try:
        for r in range(args.rounds):
            row = {}
            for name, env in CONFIGS.items():
                cmd = [sys.executable, __file__, "--_child", "--seconds", str(args.seconds), *flags]
                out = subprocess.run(cmd, env={**base, **env}, capture_output=True, text=True, check=True).stdout
                row[name] = json.loads(out.strip().splitlines()[-1])["tiles_per_s"]
            rounds.append(row)
            print(f"round {r + 1}: " + "  ".join(f"{k} {v:.1f}" for k, v in row.items()), flush=True)
    finally:
        for p in loaders:
            p.kill()
    print(f"\n{args.tile} px, batch {args.batch}, {args.threads} threads, load {args.load}")
    print(f"{'config':12} {'tiles/s median [range]':28} {'x default, median [range]':28}")
    summary = {}
    for name in CONFIGS:
        values = [row[name] for row in rounds]
        ratios = [row[name] / row["default"] for row in rounds]
        summary[name] = {"tiles_per_s": values, "ratio_to_default": ratios}
        tps = f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"
        rat = f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
        print(f"{name:12} {tps:28} {rat:28}")
    write_result(
        args.out,
        {
            "machine": machine(),
            "args": {k: v for k, v in vars(args).items() if k != "out" and not k.startswith("_")}
            | {"out": str(args.out)},
            "configs": CONFIGS,
            "summary": summary,
        },
    )


if __name__ == "__main__":
    main()
