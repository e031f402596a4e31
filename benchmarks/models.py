"""Throughput and memory of the mrseg networks on this machine (a benchmark, not a test).

Measures, side by side in one run:

1. the machine's 3x3-convolution peak (64 -> 64 channels, fp32 and bf16, NCHW and channels-last);
2. inference variants per model at the first size: ``no_grad`` eager, ``inference_mode``,
   channels-last, bf16 autocast (NCHW / channels-last), ``torch.compile`` (with ``--compile``);
3. inference (default path of :func:`mrseg.inference.predictor.prepare_for_inference`, and bf16) and
   training (forward + backward, fp32) throughput in tiles/s per model and size, with achieved
   GFLOP/s against the peak (re-measured right before each model, since a shared machine's load
   drifts during the run);
4. training memory per sample versus J = 1..4: autograd saved-tensor bytes (exact, from a
   shape-only pass) and the measured peak-RSS increase of a real training step in a fresh process
   (``torch.cuda.max_memory_allocated`` instead when a GPU is used).

Examples::

    python benchmarks/models.py                     # 256 and 512 px, batch 8 (several minutes)
    python benchmarks/models.py --quick             # 256 px, batch 2, fewer repeats
    python benchmarks/models.py --sizes 256 --batch 4 --compile --out /tmp/models.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mrseg.core.device import native_bf16
from mrseg.inference.predictor import prepare_for_inference, to_channels_last
from mrseg.models import create_model
from mrseg.models.profile import count_flops, profile_model

MPPS = [0.5, 1.0, 2.0, 4.0]
MODELS = ["unet", "mrn_bilinear", "mrn_transposed"]


def timed(fn: Callable[[], object], reps: int, warmup: int = 1) -> float:
    """Fastest of ``reps`` calls after ``warmup`` calls, in seconds.

    The minimum, not the median: on a shared machine other processes only ever slow a run down.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def model_mpps(name: str, j: int = 4) -> list[float]:
    return MPPS[:1] if name == "unet" else MPPS[:j]


# ------------------------------------------------------------------------------------------ peak
def conv_peak(batch: int, size: int, reps: int) -> dict[str, float]:
    """GFLOP/s of a 64->64 3x3 convolution on (batch, 64, size, size) in four variants."""
    x = torch.randn(batch, 64, size, size)
    w = torch.randn(64, 64, 3, 3)
    flops = 2 * batch * 64 * 64 * 9 * size * size
    results: dict[str, float] = {}
    variants: dict[str, tuple[torch.dtype, bool]] = {
        "fp32": (torch.float32, False),
        "fp32_channels_last": (torch.float32, True),
        "bf16": (torch.bfloat16, False),
        "bf16_channels_last": (torch.bfloat16, True),
    }
    with torch.inference_mode():
        for key, (dtype, cl) in variants.items():
            xi, wi = x.to(dtype), w.to(dtype)
            if cl:
                xi = xi.contiguous(memory_format=torch.channels_last)
                wi = wi.contiguous(memory_format=torch.channels_last)
            seconds = timed(lambda xi=xi, wi=wi: F.conv2d(xi, wi, padding=1), reps)
            results[key] = flops / seconds / 1e9
    return results


# ------------------------------------------------------------------------------------ inference
def inference_variants(
    name: str, size: int, batch: int, reps: int, compile_: bool, peak: dict[str, float]
) -> list[dict[str, Any]]:
    """Tiles/s of each inference variant of one model at one size."""
    torch.manual_seed(0)
    model = create_model(name, mpps=model_mpps(name)).eval()
    x = torch.randn(batch, len(model.mpps), 3, size, size)
    gflop_tile = count_flops(model, x[:1])[0] / 1e9
    with torch.no_grad():
        reference = model(x)

    def run(grad_mode: Any, autocast: bool, cl: bool, net: Any = model) -> Callable[[], torch.Tensor]:
        xi = to_channels_last(x) if cl else x

        def call() -> torch.Tensor:
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else nullcontext()
            with grad_mode(), ctx:
                return net(xi)

        return call

    variants: list[tuple[str, Callable[[], Callable[[], torch.Tensor]], str]] = [
        ("no_grad", lambda: run(torch.no_grad, False, False), "fp32"),
        ("inference_mode", lambda: run(torch.inference_mode, False, False), "fp32"),
        ("channels_last", lambda: run(torch.inference_mode, False, True), "fp32_cl"),
        ("bf16", lambda: run(torch.inference_mode, True, False), "bf16"),
        ("bf16_channels_last", lambda: run(torch.inference_mode, True, True), "bf16_cl"),
    ]
    if compile_:
        variants.append(("compile", lambda: run(torch.inference_mode, False, False, torch.compile(model)), "fp32"))
    rows = []
    for label, make, kind in variants:
        model.to(memory_format=torch.channels_last if kind.endswith("_cl") else torch.contiguous_format)  # type: ignore[call-overload]
        fn = make()
        start = time.perf_counter()
        out = fn()  # first call (includes compilation for torch.compile)
        first = time.perf_counter() - start
        seconds = timed(fn, reps, warmup=0)
        peak_key = "bf16" if kind.startswith("bf16") else "fp32"
        best_peak = max(v for k, v in peak.items() if k.startswith(peak_key))
        gflops = gflop_tile * batch / seconds
        rows.append(
            {
                "model": name,
                "size": size,
                "batch": batch,
                "variant": label,
                "tiles_per_s": batch / seconds,
                "gflop_per_tile": gflop_tile,
                "gflop_per_s": gflops,
                "peak_fraction": gflops / best_peak,
                "peak_gflop_per_s": best_peak,
                "first_call_s": first,
                "max_abs_diff": float((out.float() - reference).abs().max()),
            }
        )
        log_row(rows[-1])
    model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    return rows


# ------------------------------------------------------------------------------------ throughput
def throughput(
    name: str, size: int, batch: int, reps: int, peak: dict[str, float], mem_budget: float
) -> list[dict[str, Any]]:
    """Inference (default path and bf16) and training tiles/s of one model at one size."""
    torch.manual_seed(0)
    model = create_model(name, mpps=model_mpps(name))
    x = torch.randn(batch, len(model.mpps), 3, size, size)
    profile = profile_model(model, size)
    rows = []
    for precision in ("fp32", "bf16"):
        predictor = prepare_for_inference(model, precision=precision)  # type: ignore[arg-type]
        seconds = timed(lambda predictor=predictor: predictor(x), reps)
        rows.append(row(name, size, batch, f"infer_{precision}", seconds, profile.gflops, peak, precision))
    model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    model.train()
    # the training batch is capped so that the autograd saved tensors fit the memory budget
    train_batch = max(1, min(batch, int(mem_budget * 2**30 // max(profile.saved_bytes, 1))))
    xt = x[:train_batch].clone()
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        model(xt).float().mean().backward()
        opt.step()

    seconds = timed(step, reps)
    # forward + backward = 3x the forward FLOPs (input and weight gradients)
    rows.append(row(name, size, train_batch, "train_fp32", seconds, 3 * profile.gflops, peak, "fp32"))
    return rows


def row(
    name: str, size: int, batch: int, mode: str, seconds: float, gflop_tile: float, peak: dict[str, float], kind: str
) -> dict[str, Any]:
    best_peak = max(v for k, v in peak.items() if k.startswith(kind))
    result = {
        "model": name,
        "size": size,
        "batch": batch,
        "mode": mode,
        "tiles_per_s": batch / seconds,
        "gflop_per_tile": gflop_tile,
        "gflop_per_s": gflop_tile * batch / seconds,
        "peak_fraction": gflop_tile * batch / seconds / best_peak,
        "peak_gflop_per_s": best_peak,
    }
    log_row(result)
    return result


def log_row(r: dict[str, Any]) -> None:
    items = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items())
    print("  " + items, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------- memory
def _train_step_rss(name: str, j: int, size: int, batch: int, queue: Any) -> None:
    """In a fresh process: peak RSS after a training step at batch 1, then at ``batch`` (bytes).

    The marginal cost per sample ``(peak_batch - peak_1) / (batch - 1)`` cancels what does not grow
    with the batch (weights, gradients, library workspaces, the interpreter).
    """
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_model(name, mpps=model_mpps(name, j), width=32).train()
    x = torch.randn(batch, j, 3, size, size)
    peaks = []
    for b in (1, batch):
        model.zero_grad(set_to_none=False)
        model(x[:b]).mean().backward()
        peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    queue.put({"peak_rss_1": peaks[0], "peak_rss_batch": peaks[1]})


def memory_vs_j(name: str, size: int, batch: int, measure_rss: bool) -> list[dict[str, Any]]:
    rows = []
    ctx = mp.get_context("spawn")
    for j in range(1, 5):
        model_name = "unet" if j == 1 else name  # an MRN with J = 1 is the U-Net
        with torch.device("meta"):
            model = create_model(model_name, mpps=model_mpps(model_name, j))
        saved = profile_model(model, size).saved_bytes
        result: dict[str, Any] = {"model": name, "j": j, "size": size, "saved_mib_per_sample": saved / 2**20}
        if measure_rss:
            queue = ctx.Queue()
            proc = ctx.Process(target=_train_step_rss, args=(model_name, j, size, batch, queue))
            proc.start()
            measured = queue.get(timeout=900)
            proc.join()
            result["rss_batch"] = batch
            marginal = (measured["peak_rss_batch"] - measured["peak_rss_1"]) / (batch - 1)
            result["rss_increase_mib_per_sample"] = marginal / 2**20
        rows.append(result)
        log_row(result)
    return rows


def linear_fit(xs: list[float], ys: list[float]) -> dict[str, float]:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    ss_res = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - my) ** 2 for y in ys)
    return {"slope": slope, "intercept": intercept, "r2": 1 - ss_res / ss_tot if ss_tot else 1.0}


def plot_memory(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for (name, size), group in _group(rows).items():
        js = [r["j"] for r in group]
        ax.plot(js, [r["saved_mib_per_sample"] for r in group], "o-", label=f"{name} {size}px saved tensors")
        if "rss_increase_mib_per_sample" in group[0]:
            ax.plot(js, [r["rss_increase_mib_per_sample"] for r in group], "s--", label=f"{name} {size}px peak RSS")
    ax.set_xlabel("J (resolutions)")
    ax.set_ylabel("training memory per sample (MiB)")
    ax.set_xticks([1, 2, 3, 4])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _group(rows: list[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["size"]), []).append(r)
    return groups


# ------------------------------------------------------------------------------------------ main
def print_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    print(f"\n## {title}")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        cells = [f"{r[c]:.3g}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in columns]
        print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="256 px, batch 2, 1 repeat, small peak test")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--mem-budget-gb", type=float, default=4.0, help="cap on saved tensors per training batch")
    parser.add_argument("--memory-size", type=int, default=256, help="tile size of the memory-vs-J measurement")
    parser.add_argument("--memory-batch", type=int, default=3, help="batch of the peak-RSS measurement (>= 2)")
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["speed", "memory"],
        choices=["speed", "memory"],
        help="speed: conv peak, inference variants, throughput; memory: memory vs J",
    )
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocesses")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "models.json")
    parser.add_argument("--plot", type=Path, default=Path(__file__).parents[1] / "docs" / "img" / "memory_vs_j.png")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.batch, args.reps = [256], 2, 1

    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "native_bf16": native_bf16(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    print(f"# mrseg models benchmark: torch {meta['torch']}, {meta['threads']} threads", file=sys.stderr)
    result: dict[str, Any] = {"meta": meta}
    if "speed" in args.sections:
        result.update(speed(args))
    if "memory" in args.sections:
        result.update(memory_section(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}", file=sys.stderr)


def speed(args: argparse.Namespace) -> dict[str, Any]:
    """Conv peak, inference variants and throughput tables."""
    peak_batch, peak_size = (2, 128) if args.quick else (8, 128)
    peak = conv_peak(peak_batch, peak_size, max(args.reps, 2))
    print_table(
        f"3x3 conv peak, 64->64, {peak_batch}x64x{peak_size}x{peak_size} (GFLOP/s)",
        [{"variant": k, "gflop_per_s": v} for k, v in peak.items()],
        ["variant", "gflop_per_s"],
    )

    # the peak is measured again right before each model so that the fraction compares like with like
    # on a machine whose load changes during the run; the JSON keeps each figure once (the headline
    # peak is not repeated in the list of re-measurements)
    peaks: list[dict[str, Any]] = []
    variants = []
    for name in args.models:
        p = conv_peak(peak_batch, peak_size, 2)
        peaks.append({"before": f"variants {name}", **p})
        variants += inference_variants(name, args.sizes[0], args.batch, args.reps, args.compile, p)
    base = {r["model"]: r["tiles_per_s"] for r in variants if r["variant"] == "no_grad"}
    for r in variants:
        r["speedup"] = r["tiles_per_s"] / base[r["model"]]
    print_table(
        f"inference variants at {args.sizes[0]} px, batch {args.batch}",
        variants,
        [
            "model",
            "variant",
            "tiles_per_s",
            "speedup",
            "gflop_per_s",
            "peak_gflop_per_s",
            "peak_fraction",
            "first_call_s",
            "max_abs_diff",
        ],
    )

    through = []
    for size in args.sizes:
        for name in args.models:
            p = conv_peak(peak_batch, peak_size, 2)
            peaks.append({"before": f"throughput {name} {size}", **p})
            through += throughput(name, size, args.batch, args.reps, p, args.mem_budget_gb)
    print_table(
        "throughput (infer_* = prepare_for_inference path; train = fwd+bwd+SGD step, fp32)",
        through,
        ["model", "size", "batch", "mode", "tiles_per_s", "gflop_per_s", "peak_gflop_per_s", "peak_fraction"],
    )

    return {"conv_peak": peak, "conv_peaks_rechecked": peaks, "variants": variants, "throughput": through}


def memory_section(args: argparse.Namespace) -> dict[str, Any]:
    """Training memory per sample versus J, linear fits and the plot."""
    memory = []
    for name in ("mrn_bilinear", "mrn_transposed"):
        memory += memory_vs_j(name, args.memory_size, args.memory_batch, not args.no_rss)
    fits = {}
    for (name, size), group in _group(memory).items():
        js = [float(r["j"]) for r in group]
        fits[f"{name}_{size}_saved"] = linear_fit(js, [r["saved_mib_per_sample"] for r in group])
        if "rss_increase_mib_per_sample" in group[0]:
            fits[f"{name}_{size}_rss"] = linear_fit(js, [r["rss_increase_mib_per_sample"] for r in group])
    cols = ["model", "size", "j", "saved_mib_per_sample"] + ([] if args.no_rss else ["rss_increase_mib_per_sample"])
    print_table("training memory per sample vs J (J=1 is the U-Net)", memory, cols)
    print_table(
        "linear fits memory = a + b*J (MiB)",
        [{"fit": k, **v} for k, v in fits.items()],
        ["fit", "slope", "intercept", "r2"],
    )
    plot_memory(memory, args.plot)
    print(f"wrote {args.plot}", file=sys.stderr)
    return {"memory": memory, "fits": fits}


if __name__ == "__main__":
    main()
