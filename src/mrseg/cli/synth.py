"""``mrseg synth``: generate the embedded synthetic data set."""

from __future__ import annotations

from pathlib import Path

import typer

from mrseg.cli.app import command
from mrseg.cli.options import RENAMED_SLIDE_MPP


@command("synth", renamed=RENAMED_SLIDE_MPP)
def synth(
    out: Path = typer.Argument(
        ..., metavar="OUT", help="Output folder (must not exist or be empty, unless --overwrite)."
    ),
    slides: int = typer.Option(4, "--slides", "-n", help="Number of slides."),
    seed: int = typer.Option(0, "--seed", help="Data-set seed (slide i is seeded from (seed, i))."),
    size: int = typer.Option(8192, "--size", help="Level-0 side of every slide in pixels (at --slide-mpp)."),
    slide_mpp: float = typer.Option(0.5, "--slide-mpp", help="Microns per level-0 pixel of the slides."),
    split: str | None = typer.Option(None, "--split", help="Split fractions, e.g. train=0.8,val=0.2."),
    workers: int = typer.Option(1, "--workers", "-j", help="Slides generated in parallel processes (same output)."),
    threads: int = typer.Option(1, "--threads", help="Threads rendering each slide (same output)."),
    labels: str = typer.Option(
        "binary",
        "--labels",
        metavar="binary|multiclass",
        help="Label scheme: binary (1 tumour, 0 the rest; ASAP groups _0/_2) or multiclass "
        "(0 glass, 1 tumour, 2 lymphoid, 3 other tissue; groups tumour, lymphoid, other). Same slides.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder."),
) -> None:
    """Generate synthetic lymph-node-like H&E slides, ASAP annotations, label masks and a manifest."""
    from mrseg.synth import generate

    manifest = generate(
        out,
        slides,
        seed,
        size_px=size,
        mpp=slide_mpp,
        split=split,
        workers=workers,
        threads=threads,
        labels=labels,  # type: ignore[arg-type]  # checked by generate (ConfigError)
        overwrite=overwrite,
    )
    typer.echo(f"wrote {slides} slides; manifest: {manifest}")
