"""Recipe study for ``mrseg demo`` on validation data only (never generates or predicts test slides).

    PYTHONPATH=src nice -n 10 python benchmarks/demo_study.py OUT --seed 100 [--models unet_2 unet_4 mrn_bilinear]
        [--set train.epochs=24 ...] [--demo key=value ...]

Runs the demo pipeline with ``eval_splits=("val", "val2")``: ``val`` (2 slides, also used for model
selection) and ``val2`` (3 slides from seed ``1000*seed + 3``, the size of the test split, never used
for training or selection). Prints one line per model and appends it to ``OUT/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

from mrseg.core.overrides import parse_overrides
from mrseg.demo import default_settings, run_demo
from mrseg.demo.settings import SplitSize


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--demo", action="append", default=[], help="DemoSettings field=value (YAML value)")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--val2", type=int, default=3, help="slides in val2 (0: val only)")
    ap.add_argument("--train-slides", type=int, default=None, help="training slides (default: the demo's)")
    ap.add_argument("--val-slides", type=int, default=None, help="validation (selection) slides (default: the demo's)")
    args = ap.parse_args(argv)
    if args.seed in range(5):
        ap.error("seeds 0-4 are the acceptance seeds: never tune on them")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    settings = default_settings(seed=args.seed, device="cpu")
    splits = {k: v for k, v in settings.splits.items() if k != "test"}
    for split, n in (("train", args.train_slides), ("val", args.val_slides)):
        if n is not None:
            splits[split] = SplitSize(n, splits[split].size_px)
    evals: tuple[str, ...] = ("val",)
    if args.val2:
        splits["val2"] = SplitSize(args.val2, 2048)
        evals = ("val", "val2")
    changes = {"splits": splits, "eval_splits": evals, **parse_overrides(args.demo)}
    changes["eval_splits"] = tuple(changes["eval_splits"])
    evals = changes["eval_splits"]
    settings = replace(settings, **changes)
    if args.models:
        settings = replace(settings, models=tuple(args.models))
    if args.overrides:
        settings = replace(settings, train={**settings.train, **parse_overrides(args.overrides)})
    t0 = time.perf_counter()
    result = run_demo(args.out, settings, fresh=args.fresh)
    wall = time.perf_counter() - t0
    ru_self = resource.getrusage(resource.RUSAGE_SELF)
    ru_kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ru_self.ru_utime + ru_self.ru_stime + ru_kids.ru_utime + ru_kids.ru_stime
    rows = []
    for key, e in result.results["models"].items():
        row = {
            "model": key,
            "best_epoch": e["train"].get("best_epoch"),
            "train_cpu_s": e["train"].get("cpu_seconds"),
            "train_s": e["train"].get("seconds"),
        }
        for split in evals:
            m = e[split]
            mm = e["mimic_by_split"].get(split, {})
            row[split] = {
                "auc": m["auc"],
                "dice": m["dice"],
                "best_dice": m["best_dice"],
                "nest": mm.get("tumour_mean"),
                "mimic": mm.get("mimic_mean"),
            }
        rows.append(row)
    stages = {
        s["name"]: (round(s["seconds"], 1), round(s["cpu_seconds"], 1), s["reused"]) for s in result.results["stages"]
    }
    summary = {
        "seed": args.seed,
        "overrides": args.overrides,
        "demo": args.demo,
        "train": settings.train,
        "wall_s": wall,
        "cpu_s": cpu,
        "maxrss_self_mb": ru_self.ru_maxrss / 1024,
        "maxrss_kids_mb": ru_kids.ru_maxrss / 1024,
        "rows": rows,
        "stages": stages,
    }
    with (args.out / "summary.jsonl").open("a") as fh:
        fh.write(json.dumps(summary) + "\n")
    print(
        f"seed {args.seed}  wall {wall:.0f}s  cpu {cpu:.0f}s  rss self {ru_self.ru_maxrss / 1024:.0f}MB "
        f"kids {ru_kids.ru_maxrss / 1024:.0f}MB  {args.overrides} {args.demo}"
    )
    for r in rows:
        parts = [f"{r['model']:15s} ep {r['best_epoch']:>3} cpu {r['train_cpu_s'] or 0:6.0f}"]
        for split in evals:
            m = r[split]
            parts.append(
                f"{split}: auc {m['auc']:.4f} dice {m['dice']:.3f} nest {m['nest']:.2f} mimic {m['mimic']:.2f}"
            )
        print("  ".join(parts))
    for name, (s, c, reused) in stages.items():
        print(f"  stage {name:28s} {s:7.1f}s cpu {c:7.1f}s{' (reused)' if reused else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
