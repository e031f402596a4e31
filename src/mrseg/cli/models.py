"""``mrseg models`` (architecture costs) and ``mrseg export`` (ONNX / TorchScript)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from mrseg.cli.app import command
from mrseg.cli.options import DEFAULT_PATCH_PX, MULTI_VALUE_ARGS, mpps_option, mpps_value
from mrseg.core.atomic import check_new_file


@command("models", context_settings=MULTI_VALUE_ARGS)
def models_command(
    ctx: typer.Context,
    size: int = typer.Option(DEFAULT_PATCH_PX, "--size", help="Tile edge in pixels (at each patch's own mpp)."),
    mpps: list[str] = mpps_option("Input resolutions of the MRNs in microns per pixel (the U-Net takes the first)."),
    width: int = typer.Option(32, "--width", help="Base channels F (doubling per level)."),
    depth: int = typer.Option(4, "--depth", help="Pooling levels D (with a backbone: deepest stage stride 2**D)."),
    classes: int = typer.Option(1, "--classes", help="Logit channels C."),
    encoder: list[str] = typer.Option(
        ["unet"], "--encoder", metavar="NAME", help="unet or a timm model name (needs the timm extra); repeatable."
    ),
    backbones: bool = typer.Option(
        False, "--backbones", help="Every tested timm backbone and unet, for J = 1..len(--mpps) (J = 1: U-Net)."
    ),
    per_j: bool = typer.Option(False, "--per-j", help="One row per J = 1..len(--mpps) (J = 1: the U-Net)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
) -> None:
    """Parameters, GFLOPs and activation memory per tile of every architecture (U-Net at the finest mpp).

    GFLOPs = 2 x multiply-accumulates of all convolutions for one tile. "act MiB" sums the module
    outputs of one inference forward; "saved MiB" is what autograd keeps for backward in training
    (both per sample, float32). Profiled on the meta device: no weights, no arithmetic.
    """
    from mrseg.models.backbones import BACKBONES
    from mrseg.models.profile import profile_catalog

    values = list(mpps_value(ctx, mpps))
    encoders = ("unet", *BACKBONES) if backbones else tuple(encoder)
    rows = profile_catalog(
        values, size, encoders=encoders, per_j=per_j or backbones, num_classes=classes, width=width, depth=depth
    )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    _print_table(rows, f"mrseg models at {size} px, width {width}, depth {depth}, {classes} class(es)")


def _print_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    columns = ("model", "encoder", "J", "mpps", "params (M)", "GFLOPs", "act MiB", "saved MiB", "input", "output")
    for column in columns:
        table.add_column(
            column, justify="left" if column in ("model", "encoder", "mpps", "input", "output") else "right"
        )
    for row in rows:
        table.add_row(
            row["name"],
            row["encoder"],
            str(row["j"]),
            " ".join(f"{m:g}" for m in row["mpps"]),
            f"{row['params'] / 1e6:.2f}",
            f"{row['gflops']:.1f}",
            f"{row['activation_bytes'] / 2**20:.0f}",
            f"{row['saved_bytes'] / 2**20:.0f}",
            "x".join(map(str, row["input_shape"])),
            "x".join(map(str, row["output_shape"])),
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)


@command("export")
def export_command(
    checkpoint: Path = typer.Argument(..., metavar="CHECKPOINT", help="An mrseg checkpoint (.pt)."),
    format: str = typer.Option("onnx", "--format", "-f", metavar="onnx|torchscript", help="Export format."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file (written atomically after verification)."),
    atol: float = typer.Option(1e-4, "--atol", help="Largest accepted |exported - PyTorch| on random input."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
) -> None:
    """Export a checkpoint's network to ONNX (dynamic batch) or TorchScript, verified against PyTorch."""
    from mrseg.models.export import FORMATS, ExportError, export_checkpoint

    if format not in FORMATS:
        raise ExportError(f"unknown --format {format!r}; choose one of {list(FORMATS)}")
    check_new_file(out, overwrite=overwrite)
    result = export_checkpoint(checkpoint, out, format=format, atol=atol)  # type: ignore[arg-type]
    typer.echo(
        f"wrote {result.path} ({result.format}, input {list(result.input_shape)} with dynamic batch, "
        f"max abs diff vs PyTorch {result.max_abs_diff:.2e})"
    )
