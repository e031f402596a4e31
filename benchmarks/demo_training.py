"""Training throughput of ``mrseg demo`` as a user gets it: this checkout against older code, side by side.

Issue 14 goal 5 asks for the samples/s of the demo's recipes, for both model kinds, against the code
of the day the issue was filed. ``benchmarks/training.py --demo-models`` times one ``train()`` call
with this checkout's recipe and cannot run code from before the restructure; this script instead runs
the demo itself (``mrseg.demo.pipeline.run_demo``, an API both old and new code have) in a fresh
interpreter whose ``mrseg`` comes from ``--today SRC`` or from this checkout, each with its own recipe,
loaders, threads and parallelism (the code of the day trains one model after the other with a loader
worker; today's two at once, loading in the trainer), restricted to one model kind at a time and to
``--epochs`` epochs, and stops it as soon as the last model of that kind has finished training (the
prediction and evaluation stages that follow are not timed and not waited for).

For each kind (``unet``: the four U-Nets, ``mrn``: both MRNs), samples/s = the models' optimiser steps
x batch size / the wall seconds of the training phase, from the first training stage's start to the
last one's end (the stage records' ``seconds`` and the record files' modification times; validation
and checkpoints included, slide generation not). Rounds alternate the two codes in fresh processes;
the table gives each kind's median ratio (this / today) and its range. CPU seconds per sample
(user + system of the training stages) come with it, since the two codes use the two cores differently.

Usage::

    python benchmarks/demo_training.py --today /path/to/old/checkout/src --epochs 8 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: The demo's models of each kind (``mrseg.demo.settings.MODELS`` keys, in both old and new code).
KINDS: dict[str, tuple[str, ...]] = {
    "unet": ("unet_0.5", "unet_1", "unet_2", "unet_4"),
    "mrn": ("mrn_bilinear", "mrn_transposed"),
}

_CHILD = """
import sys, json
from dataclasses import replace
from mrseg.demo.settings import default_settings
from mrseg.demo.pipeline import run_demo
args = json.loads(sys.argv[1])
settings = default_settings()
settings = replace(settings, seed=args["seed"], models=tuple(args["models"]),
                   train={**settings.train, "train.epochs": args["epochs"]})
json.dump({"train": settings.train}, open(args["settings_out"], "w"))
run_demo(args["out"], settings, fresh=True)
"""


def training_phase(stages: Path, models: tuple[str, ...]) -> dict[str, float]:
    """Wall and CPU seconds of the training stages, from their records in ``stages`` (a ``.stages`` folder).

    The phase runs from the earliest stage start (record file modification time minus the stage's
    ``seconds``) to the latest record's modification time.
    """
    starts, ends, cpu = [], [], 0.0
    for key in models:
        path = stages / f"train_{key}.json"
        record = json.loads(path.read_text())
        end = path.stat().st_mtime
        starts.append(end - float(record["seconds"]))
        ends.append(end)
        cpu += float(record["cpu_seconds"])
    return {"wall_s": max(ends) - min(starts), "cpu_s": cpu}


def run_kind(src: Path, models: tuple[str, ...], epochs: int, seed: int, tmp: Path, tag: str) -> dict[str, Any]:
    """One demo run of ``models`` with the code at ``src``, stopped once they have all trained."""
    out = tmp / tag
    settings_out = tmp / f"{tag}-settings.json"
    args = {"out": str(out), "models": list(models), "epochs": epochs, "seed": seed, "settings_out": str(settings_out)}
    env = {**os.environ, "PYTHONPATH": str(src)}
    log = (tmp / f"{tag}.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(args)], env=env, stdout=log, stderr=log, start_new_session=True
    )
    stages = out / ".stages"
    try:
        while not all((stages / f"train_{key}.json").exists() for key in models):
            if proc.poll() is not None:
                tail = (tmp / f"{tag}.log").read_text()[-4000:]
                raise RuntimeError(f"{tag}: the demo ended (rc {proc.returncode}) before training finished:\n{tail}")
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole group: the demo's training/prediction workers too
            proc.wait()
        log.close()
    phase = training_phase(stages, models)
    train = json.loads(settings_out.read_text())["train"]
    samples = (
        len(models) * int(train["train.epochs"]) * int(train["train.steps_per_epoch"]) * int(train["train.batch_size"])
    )
    shutil.rmtree(out)  # the demo folder this function had the child create
    return {
        **phase,
        "samples": samples,
        "samples_per_s": samples / phase["wall_s"],
        "cpu_ms_per_sample": 1000 * phase["cpu_s"] / samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--today", type=Path, required=True, help="src folder of the code to compare against")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of each model's demo recipe (both codes)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=100, help="demo seed (a tuning seed: test slides are not used)")
    parser.add_argument("--kinds", nargs="+", choices=sorted(KINDS), default=list(KINDS))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "demo_training.json")
    args = parser.parse_args()
    if args.epochs < 1 or args.rounds < 1:
        parser.error("--epochs and --rounds must be at least 1")
    if not (args.today / "mrseg").is_dir():
        parser.error(f"--today {args.today}: no mrseg package there (give the src folder of a checkout)")
    sys.path.insert(0, str(Path(__file__).parent))
    from common import machine, ratio_summary, write_result

    here = Path(__file__).resolve().parents[1] / "src"
    variants = {"this": here, "today": args.today.resolve()}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mrseg-demo-training-") as tmp_name:
        tmp = Path(tmp_name)
        for round_index in range(args.rounds):
            order = list(variants) if round_index % 2 == 0 else list(reversed(variants))
            for kind in args.kinds:
                got = {}
                for name in order:
                    got[name] = run_kind(
                        variants[name], KINDS[kind], args.epochs, args.seed, tmp, f"r{round_index}-{kind}-{name}"
                    )
                    print(
                        f"round {round_index + 1} {kind:4s} {name:5s}: {got[name]['samples_per_s']:6.1f} samples/s "
                        f"({got[name]['wall_s']:.1f} s wall, {got[name]['cpu_ms_per_sample']:.1f} CPU-ms/sample)",
                        file=sys.stderr,
                    )
                rows.append(
                    {
                        "round": round_index + 1,
                        "kind": kind,
                        **{name: got[name] for name in variants},
                        "ratio": got["this"]["samples_per_s"] / got["today"]["samples_per_s"],
                    }
                )
    summary = []
    header = ("kind", "this samples/s", "today samples/s", "ratio (median, range)", "CPU-ms/sample this/today")
    print(f"{header[0]:5s} {header[1]:>15s} {header[2]:>16s} {header[3]:>24s} {header[4]:>26s}")
    for kind in args.kinds:
        mine = [r for r in rows if r["kind"] == kind]
        ratios = [r["ratio"] for r in mine]
        entry = {
            "kind": kind,
            "models": list(KINDS[kind]),
            "this_samples_per_s": statistics.median(r["this"]["samples_per_s"] for r in mine),
            "today_samples_per_s": statistics.median(r["today"]["samples_per_s"] for r in mine),
            **ratio_summary(ratios),
            "this_cpu_ms_per_sample": statistics.median(r["this"]["cpu_ms_per_sample"] for r in mine),
            "today_cpu_ms_per_sample": statistics.median(r["today"]["cpu_ms_per_sample"] for r in mine),
        }
        summary.append(entry)
        print(
            f"{kind:5s} {entry['this_samples_per_s']:15.1f} {entry['today_samples_per_s']:16.1f} "
            f"{entry['ratio_median']:9.2f}x [{min(ratios):.2f}-{max(ratios):.2f}] "
            f"{entry['this_cpu_ms_per_sample']:12.1f} / {entry['today_cpu_ms_per_sample']:.1f}"
        )
    meta = {
        "machine": machine(),
        "epochs": args.epochs,
        "rounds": args.rounds,
        "seed": args.seed,
        "today": str(args.today),
    }
    write_result(args.out, {"meta": meta, "summary": summary, "rounds": rows})


if __name__ == "__main__":
    main()
