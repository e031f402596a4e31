"""A timm backbone MRN against the demo's width-8 MRN on the synthetic data (a comparison, not a test).

Runs the demo's stages (:mod:`mrseg.demo.stages`: data, train, predict, evaluate, mimic, report) with
its default settings, but on a chosen set of models instead of the six of the paper: by default the
demo's MRN-bilinear (U-Net encoders of width 8) and the same MRN over ResNet-18 backbones
(``configs/synthetic_mrn_resnet18.yaml``), both trained on the same number of patches (the demo's
shared recipe: 16 epochs x 16 steps x batch 16 = 4,096) and evaluated on the same validation and
held-out test slides. Writes the demo's ``results.json``, ``report.md`` and ``report.html`` to
``--out`` and prints the metrics table. Needs timm (``pip install "mrseg[timm]"``).

Examples::

    nice -n 10 python benchmarks/backbones.py --out /tmp/backbones            # ~20 min on 2 cores
    python benchmarks/backbones.py --quick --out /tmp/backbones-quick         # smoke run
    python benchmarks/backbones.py --out /tmp/bb --models mrn_bilinear mrn_resnet18 mrn_resnet18_shared
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from mrseg.core.device import resolve_device
from mrseg.demo import default_settings, quick_settings
from mrseg.demo.cache import StageRunner
from mrseg.demo.pipeline import run_stage_sequence
from mrseg.demo.report import rich_table
from mrseg.demo.settings import ModelSpec
from mrseg.demo.stages import DemoRun

MPPS = (0.5, 1.0, 2.0, 4.0)
#: The models this comparison can run (the demo's MRN-bilinear is the reference).
SPECS: dict[str, ModelSpec] = {
    "mrn_bilinear": ModelSpec("mrn_bilinear", "MRN-bilinear (U-Net width 8)", "synthetic_mrn_bilinear", MPPS),
    "mrn_resnet18": ModelSpec("mrn_resnet18", "MRN-bilinear (ResNet-18)", "synthetic_mrn_resnet18", MPPS),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Run folder (finished stages are reused).")
    parser.add_argument("--models", nargs="+", default=list(SPECS), choices=list(SPECS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="The demo's quick preset (numbers not meaningful).")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fresh", action="store_true")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    make = quick_settings if args.quick else default_settings
    settings = make(seed=args.seed, device=args.device, workers=2)
    settings = replace(settings, models=tuple(args.models), preset=f"{settings.preset}+backbones")
    root = args.out.resolve()
    root.mkdir(parents=True, exist_ok=True)
    specs = [SPECS[key] for key in args.models]
    run = DemoRun(root, settings, StageRunner(root, args.fresh), str(resolve_device(args.device)), specs, False)
    result = run_stage_sequence(run, time.perf_counter())
    Console(width=160).print(rich_table(result.results))
    print(f"report: {result.report_html}")


if __name__ == "__main__":
    main()
