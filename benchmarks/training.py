"""Training throughput: full steps with real loading from synthetic slides vs compute on in-memory tensors.

For each model and worker count, measures samples/s of

* ``loaded``: the real training step of :mod:`mrseg.training.loop` (DataLoader with workers reading
  concentric patches + masks from pyramidal TIFFs, augmentation, ``InputSpec.to_tensor``, forward,
  loss + L2, backward, Adam step);
* ``in_memory``: the same forward/loss/backward/step on a fixed in-memory batch of the same shape.

The ratio ``loaded / in_memory`` says whether the loader keeps the model busy (target >= 0.8 with
the recipe's default number of workers). Prints a table and writes JSON.

Usage: python benchmarks/training.py [--config synthetic_mrn_bilinear] [--steps 30] [--workers 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", nargs="+", default=["synthetic_mrn_bilinear", "synthetic_unet"])
    parser.add_argument("--data", type=Path, default=None, help="existing data set (default: generate 4 slides)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="*", default=None, help="default: the config's num_workers")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "training.json")
    args = parser.parse_args()

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
