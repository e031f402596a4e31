"""How fast can the model itself go? Model-only tiles/s of every mrseg engine against the peer's model path.

The head to head with TIAToolbox (``benchmarks/peer.py``) times everything from slide path to outputs on
disk. When mrseg's end-to-end time is almost all model (96 % on the development machine), its ratio to
the peer can only grow as far as its *model* is faster than the peer's. This benchmark measures that
ceiling in one process, side by side, on the peer benchmark's network (mrseg's U-Net, depth 4, base
width 16, batch-norm statistics randomised as ``benchmarks/peer.py`` does), 256-px tiles, batch 8:

* ``peer path``: what ``../shared/bench/peer_tiatoolbox.py`` runs per batch: the network as trained
  (batch norm not folded, weights in NCHW), input ``uint8 NHWC -> float32`` permuted to an NCHW view
  (channels-last strides) and scaled, ``torch.inference_mode``, sigmoid, back to NHWC numpy;
* ``mrseg torch``: :func:`mrseg.inference.predictor.prepare_model` with the default engine (batch norm
  folded, channels-last weights and input), from the same ``uint8`` batch to a numpy probability;
* ``mrseg onnx``: the ONNX Runtime engine (export and session cost reported, not timed);
* ``mrseg compile`` (``--compile``): the ``torch.compile`` engine (compile cost reported, not timed);
* ``jit frozen``: ``torch.jit.freeze`` + ``optimize_for_inference`` of the folded channels-last network
  (not an engine of mrseg; measured to see whether TorchScript's fusions would pay).

Variants run interleaved, ``--repeats`` rounds of ``--batches`` batches each; the table gives the median
and the best round, and each variant's ratio to the peer path in the same round (median over rounds).

Example::

    python benchmarks/engine_ceiling.py --repeats 5 --out benchmarks/results/engine_ceiling.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_result
from peer import make_checkpoint

from mrseg.core.input_spec import InputSpec
from mrseg.inference.predictor import prepare_model
from mrseg.models.checkpoint import load_checkpoint
from mrseg.models.fold import fold_batch_norm
from mrseg.models.inputs import to_tensor


def peer_path(net: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """The peer script's ``infer_batch``: NHWC uint8 -> NCHW view in [0, 1] -> net -> sigmoid -> NHWC numpy."""
    net = net.eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(dtype=torch.float32).permute(0, 3, 1, 2).mul_(1.0 / 255.0)
            return torch.sigmoid(net(x)).permute(0, 2, 3, 1).cpu().numpy()

    return run


#: mrseg's own input conversion (:func:`mrseg.models.inputs.to_tensor`) with mean 0 and std 1, so that
#: every variant sees the peer's values (uint8 / 255) and only the layout and the engine differ.
UNIT_SPEC = InputSpec((0.5,), 256, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def mrseg_input(batch: np.ndarray) -> torch.Tensor:
    """``uint8 (N, H, W, 3)`` -> float32 ``(N, 1, 3, H, W)`` in [0, 1], channels-last memory, as predict makes it."""
    return to_tensor(batch[:, np.newaxis], UNIT_SPEC, channels_last=True)


def engine_path(model: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[np.ndarray], np.ndarray]:
    """mrseg's batch path: :func:`mrseg_input` -> an engine's model -> sigmoid -> numpy probability."""

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return torch.sigmoid(model(mrseg_input(batch))).numpy()

    return run


def jit_path(net: torch.nn.Module, example: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """TorchScript, frozen and optimised for inference, of the folded channels-last network."""
    fold_batch_norm(net.eval())
    net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    with torch.no_grad():
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(net, mrseg_input(example))))

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(frozen(mrseg_input(batch))).numpy()

    return run


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=4, help="batches per variant and round")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--compile", action="store_true", help="also the torch.compile engine (minutes to compile)")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime engine")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "engine_ceiling.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="mrseg-ceiling-") as work:
        os.environ.setdefault("MRSEG_CACHE_DIR", str(Path(work) / "cache"))
        ckpt_path = make_checkpoint(Path(work) / "unet.pt", args.width, args.depth, args.tile, 0.5, 0)
        ckpt = load_checkpoint(ckpt_path)
        rng = np.random.default_rng(0)
        batch = rng.integers(0, 256, (args.batch, args.tile, args.tile, 3), dtype=np.uint8)

        variants: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
        setup_s: dict[str, float] = {}
        engines = ["torch"] + ([] if args.no_onnx else ["onnx"]) + (["compile"] if args.compile else [])
        builders: list[tuple[str, Callable[[], Callable[[np.ndarray], np.ndarray]]]] = [
            ("peer path", lambda: peer_path(ckpt.build_model())),
            *[(f"mrseg {e}", lambda e=e: engine_path(prepare_model(ckpt, "cpu", "fp32", e))) for e in engines],
            ("jit frozen", lambda: jit_path(ckpt.build_model(), batch)),
        ]
        for name, build in builders:
            start = time.perf_counter()
            fn = build()
            fn(batch)  # first call: compilation, session start
            setup_s[name] = time.perf_counter() - start
            variants[name] = fn
            print(f"[setup] {name}: {setup_s[name]:.1f} s", file=sys.stderr, flush=True)

        reference = variants["peer path"](batch).reshape(args.batch, -1)
        max_diff = {n: float(np.abs(f(batch).reshape(args.batch, -1) - reference).max()) for n, f in variants.items()}
        rounds: dict[str, list[float]] = {name: [] for name in variants}
        for r in range(args.repeats):
            for name, fn in variants.items():
                start = time.perf_counter()
                for _ in range(args.batches):
                    fn(batch)
                rounds[name].append(args.batches * args.batch / (time.perf_counter() - start))
            print(f"[round {r + 1}/{args.repeats}] load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)

    rows = []
    for name, rates in rounds.items():
        ratios = [a / b for a, b in zip(rates, rounds["peer path"], strict=True)]
        rows.append(
            {
                "variant": name,
                "tiles_per_s_median": statistics.median(rates),
                "tiles_per_s_best": max(rates),
                "x_peer_median": statistics.median(ratios),
                "x_peer_range": [min(ratios), max(ratios)],
                "setup_s": setup_s[name],
                "max_abs_diff_vs_peer": max_diff[name],
            }
        )
    print(
        f"\nmodel only: U-Net width {args.width} depth {args.depth}, {args.tile} px, batch {args.batch}, "
        f"{args.threads} threads, {args.repeats} rounds x {args.batches} batches"
    )
    print(f"{'variant':<14} {'tiles/s med':>11} {'best':>7} {'x peer':>7} {'range':>13} {'setup s':>8} {'max |dp|':>9}")
    for row in rows:
        lo, hi = row["x_peer_range"]
        print(
            f"{row['variant']:<14} {row['tiles_per_s_median']:>11.2f} {row['tiles_per_s_best']:>7.2f} "
            f"{row['x_peer_median']:>7.2f} {f'{lo:.2f}-{hi:.2f}':>13} {row['setup_s']:>8.1f} "
            f"{row['max_abs_diff_vs_peer']:>9.1e}"
        )
    result = {
        "benchmark": "engine_ceiling",
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine": {**machine(), "torch": torch.__version__},
        "rows": rows,
    }
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
