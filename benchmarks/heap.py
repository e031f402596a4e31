"""glibc's heap thresholds and a network's speed on CPU: :func:`mrseg.core.memory.keep_freed_heap` on and off.

Each case runs in fresh processes, alternating "glibc" (its own thresholds) and "kept" (the thresholds
of ``keep_freed_heap``), ``--rounds`` times: a U-Net's inference forward (batch of tiles, as in the tile
loop) and a training step (forward, BCE, backward, Adam), timed after two warm-up iterations, with the
minor page faults per iteration. The table gives the median samples/s of each side and their paired
ratio; the JSON has every run.

Usage::

    python benchmarks/heap.py                                   # 128 and 256 px, inference and training
    python benchmarks/heap.py --sizes 64 256 --width 8 --rounds 3
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import answered_as_child, machine, ratio_summary, run_json_child, write_result

ROOT = Path(__file__).resolve().parents[1]


def child(cfg: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this fresh process."""
    import torch

    from mrseg.core.memory import keep_freed_heap
    from mrseg.models import create_model

    applied = keep_freed_heap() if cfg["side"] == "kept" else False
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    net = create_model("unet", mpps=[0.5], width=cfg["width"], depth=cfg["depth"])
    net = net.to(memory_format=torch.channels_last)
    size, batch = cfg["size"], cfg["batch"]
    x = torch.rand(batch, 1, 3, size, size)
    if cfg["mode"] == "inference":
        net.eval()

        def step() -> None:
            with torch.inference_mode():
                torch.sigmoid(net(x)).float().numpy()

    else:
        y = (torch.rand(batch, 1, size, size) > 0.5).float()
        opt = torch.optim.Adam(net.parameters(), 1e-3)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.binary_cross_entropy_with_logits(net(x), y).backward()
            opt.step()

    for _ in range(2):
        step()
    faults0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    for _ in range(cfg["steps"]):
        step()
    wall = time.perf_counter() - t0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
    return {
        "samples_per_s": cfg["steps"] * batch / wall,
        "faults_per_step": faults / cfg["steps"],
        "applied": applied,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="tile / patch edge (px)")
    p.add_argument("--modes", nargs="+", default=["inference", "training"], choices=["inference", "training"])
    p.add_argument("--width", type=int, default=16, help="U-Net base width")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--batch", type=int, default=16, help="inference batch (training uses half)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=10, help="timed iterations per run")
    p.add_argument("--rounds", type=int, default=2, help="alternating pairs of fresh processes")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "heap.json")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    if answered_as_child(args, child):
        return
    runs: list[dict[str, Any]] = []
    for mode in args.modes:
        for size in args.sizes:
            base = {"mode": mode, "size": size, "width": args.width, "depth": args.depth, "threads": args.threads}
            base |= {"batch": args.batch if mode == "inference" else max(1, args.batch // 2), "steps": args.steps}
            for r in range(args.rounds):
                for side in ("glibc", "kept"):
                    result = run_json_child(__file__, {**base, "side": side})
                    runs.append({**base, "side": side, "round": r, **result})
                    print(f"{mode} {size} px {side}: {result['samples_per_s']:.1f} samples/s", file=sys.stderr)
    head = f"{'mode':<10}{'px':>5}{'glibc /s':>10}{'kept /s':>10}{'ratio':>8}{'[range]':>14}"
    head += f"{'faults glibc':>14}{'kept':>8}"
    print("\n" + head + "\n" + "-" * len(head))
    summary = []
    for mode in args.modes:
        for size in args.sizes:
            case = [r for r in runs if r["mode"] == mode and r["size"] == size]
            side = {s: [r for r in case if r["side"] == s] for s in ("glibc", "kept")}
            ratios = [k["samples_per_s"] / g["samples_per_s"] for g, k in zip(side["glibc"], side["kept"], strict=True)]
            med = {s: statistics.median(r["samples_per_s"] for r in side[s]) for s in side}
            faults = {s: statistics.median(r["faults_per_step"] for r in side[s]) for s in side}
            row = {"mode": mode, "size": size, "samples_per_s": med, **ratio_summary(ratios)}
            row |= {"faults_per_step": faults}
            summary.append(row)
            rng = f"[{min(ratios):.2f}-{max(ratios):.2f}]"
            print(
                f"{mode:<10}{size:>5}{med['glibc']:>10.1f}{med['kept']:>10.1f}{statistics.median(ratios):>7.2f}x"
                f"{rng:>14}{faults['glibc']:>14.0f}{faults['kept']:>8.0f}"
            )
    write_result(
        args.out,
        {"benchmark": "heap", "command": " ".join(sys.argv), "machine": machine(), "summary": summary, "runs": runs},
    )


if __name__ == "__main__":
    main()
