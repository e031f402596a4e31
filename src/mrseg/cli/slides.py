"""``mrseg info`` (a slide's facts) and ``mrseg patch`` (a concentric multi-resolution figure)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import typer

from mrseg.cli.app import command
from mrseg.cli.options import (
    DEFAULT_PATCH_PX,
    MULTI_VALUE_ARGS,
    RENAMED_SLIDE_MPP,
    backend_option,
    mpps_option,
    mpps_value,
    slide_mpp_option,
)
from mrseg.core.atomic import check_new_file, check_not_input
from mrseg.core.errors import ConfigError
from mrseg.core.input_spec import InputSpec
from mrseg.wsi.slide import Slide

log = logging.getLogger(__name__)


def slide_facts(slide: Any) -> dict[str, Any]:
    """The JSON-able facts ``mrseg info --json`` prints for an open :class:`mrseg.wsi.slide.Slide`.

    A slide without mpp (``slide.mpp_known`` False) has ``mpp`` and every level's ``mpp`` None.
    """
    known = getattr(slide, "mpp_known", True)
    return {
        "path": str(slide.path),
        "backend": slide.backend,
        "vendor": slide.vendor,
        "dimensions": list(slide.dimensions),
        "level_count": slide.level_count,
        "levels": [
            {"size": list(size), "downsample": ds, "mpp": mpp if known else None}
            for size, ds, mpp in zip(slide.level_dimensions, slide.level_downsamples, slide.level_mpps, strict=True)
        ],
        "mpp": slide.mpp if known else None,
        "associated_images": list(slide.associated_images),
    }


@command("info", renamed=RENAMED_SLIDE_MPP)
def info_command(
    slide_path: Path = typer.Argument(..., metavar="SLIDE", help="Slide file (any OpenSlide format or TIFF)."),
    slide_mpp: float | None = slide_mpp_option(),
    backend: str = backend_option(),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Print a slide's size, pyramid levels with their mpp, vendor and associated images.

    A slide without mpp (none in the file, no --slide-mpp) shows its pixel facts and "mpp unknown".
    """
    with Slide.open(slide_path, backend=backend, mpp=slide_mpp, require_mpp=False) as slide:
        facts = slide_facts(slide)
    if as_json:
        typer.echo(json.dumps(facts))
        return
    w, h = facts["dimensions"]
    mpp = facts["mpp"]
    typer.echo(f"{facts['path']}")
    typer.echo(f"  backend   {facts['backend']} (vendor {facts['vendor']})")
    if mpp is None:
        typer.echo(f"  size      {w} x {h} px, mpp unknown (give it with --slide-mpp)")
    else:
        typer.echo(f"  size      {w} x {h} px at {mpp:g} um/px ({w * mpp / 1000:.2f} x {h * mpp / 1000:.2f} mm)")
    typer.echo(f"  levels    {facts['level_count']}")
    for index, level in enumerate(facts["levels"]):
        lw, lh = level["size"]
        at = "mpp unknown" if level["mpp"] is None else f"{level['mpp']:.4g} um/px"
        typer.echo(f"    {index}: {lw} x {lh} px, downsample {level['downsample']:g}, {at}")
    names = ", ".join(facts["associated_images"]) or "none"
    typer.echo(f"  associated images: {names}")


@command("patch", renamed={"--mpp": "--mpps"}, context_settings=MULTI_VALUE_ARGS)
def patch_command(
    ctx: typer.Context,
    slide_path: Path = typer.Argument(..., metavar="SLIDE", help="Slide file."),
    center: tuple[float, float] = typer.Option(..., "--center", metavar="X Y", help="Centre in level-0 pixels."),
    mpps: list[str] = mpps_option("Resolutions of the patches in microns per pixel."),
    size: int = typer.Option(DEFAULT_PATCH_PX, "--size", help="Patch edge in pixels (at each patch's own mpp)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output PNG (written atomically)."),
    slide_mpp: float | None = slide_mpp_option(),
    backend: str = backend_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
) -> None:
    """Write the concentric patches around one centre side by side, finer fields of view outlined."""
    from mrseg.core.png import write_png
    from mrseg.wsi.concentric import concentric_figure, read_concentric

    spec = InputSpec(mpps=mpps_value(ctx, mpps), size_px=size)
    if not all(math.isfinite(c) for c in center):
        raise ConfigError(f"--center must be two finite level-0 coordinates, got {center}")
    check_not_input(out, slide_path)
    check_new_file(out, overwrite=overwrite)
    with Slide.open(slide_path, backend=backend, mpp=slide_mpp) as slide:
        w0, h0 = slide.dimensions
        if not (0 <= center[0] < w0 and 0 <= center[1] < h0):
            log.warning(
                "%s: centre %g, %g lies outside the slide (%dx%d level-0 px): the patches show glass",
                slide_path,
                *center,
                w0,
                h0,
            )
        patches = read_concentric(slide, center, spec)
    figure = concentric_figure(patches, spec.mpps)
    write_png(out, figure)
    typer.echo(
        f"wrote {out} ({spec.num_resolutions} patches of {size} px at {' '.join(f'{m:g}' for m in spec.mpps)} um/px)"
    )
