"""``mrseg annotations`` and ``mrseg tissue``: inspect annotation files and tissue masks."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from mrseg.cli.app import command
from mrseg.cli.options import RENAMED_SLIDE_MPP, slide_mpp_option
from mrseg.core.errors import MrsegError
from mrseg.core.tissue_spec import TissueSettings
from mrseg.wsi.slide import Slide

#: The default tissue-detection settings (``--tissue-mpp``'s default is theirs).
_TISSUE = TissueSettings()


@command("annotations", renamed=RENAMED_SLIDE_MPP)
def annotations_command(
    file: Path = typer.Argument(..., metavar="FILE", help="ASAP XML, GeoJSON, or label mask (TIFF/PNG)."),
    slide: Path | None = typer.Option(None, "--slide", help="The slide: gives mpp, mask scale and an overlay."),
    slide_mpp: float | None = slide_mpp_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    overlay: Path | None = typer.Option(
        None, "--overlay", help="Overlay PNG path (needs --slide; default ./<FILE stem>.overlay.png)."
    ),
) -> None:
    """Summarise an annotation file: counts per group/label, areas (mm^2 when mpp is known), bounding box."""
    from mrseg.wsi.annotations import load_annotations
    from mrseg.wsi.annotations.stats import summarize, warn_outside, write_overlay

    if slide_mpp is not None and not slide_mpp > 0:
        raise MrsegError(f"--slide-mpp must be positive, got {slide_mpp}")
    if overlay is not None and slide is None:
        raise MrsegError("--overlay needs --slide (the overlay is drawn on the slide thumbnail)")
    opened: Any = None
    mpp = slide_mpp
    try:
        if slide is not None:
            opened = Slide.open(slide, mpp=mpp)
            mpp = opened.mpp
        dims = tuple(opened.dimensions) if opened is not None else None
        with load_annotations(file, slide_dimensions=dims) as ann:  # type: ignore[arg-type]
            summary = summarize(ann, mpp)
            if opened is not None:
                summary["outside_fraction"] = warn_outside(ann, opened.dimensions, opened.path)
                target = overlay if overlay is not None else Path.cwd() / f"{file.stem}.overlay.png"
                summary["overlay"] = str(write_overlay(ann, opened, target))
    finally:
        if opened is not None:
            opened.close()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    count = summary["annotations"]
    console.print(f"{summary['file']}: {summary['kind']}" + (f", {count} annotation(s)" if count is not None else ""))
    if summary["groups"]:
        groups = Table("group", "label", "count", "area (level-0 px^2)", "area (mm^2)", title="annotations by group")
        for entry in summary["groups"]:
            groups.add_row(
                entry["group"] or "(none)",
                str(entry["label"]),
                str(entry["count"]),
                f"{entry['area_l0_px2']:.0f}",
                "n/a" if entry["area_mm2"] is None else f"{entry['area_mm2']:.4f}",
            )
        console.print(groups)
    table = Table(
        "label", "role", "count", "groups", "area (level-0 px^2)", "area (mm^2)", title="labels after exclusions"
    )
    for entry in summary["labels"]:
        table.add_row(
            str(entry["label"]),
            entry["role"],
            "-" if entry["count"] is None else str(entry["count"]),
            ", ".join(entry["groups"]) or "-",
            f"{entry['area_l0_px2']:.0f}",
            "n/a" if entry["area_mm2"] is None else f"{entry['area_mm2']:.4f}",
        )
    console.print(table)
    if summary["total_area_mm2"] is None:
        console.print("total area: unavailable in mm^2 (give --slide or --slide-mpp)")
    else:
        console.print(f"total area: {summary['total_area_mm2']:.4f} mm^2 at {summary['mpp']:g} mpp")
    bounds = summary["bounds_l0"]
    console.print("bounding box (level-0 px): " + ("none" if bounds is None else ", ".join(f"{b:.1f}" for b in bounds)))
    if "overlay" in summary:
        console.print(f"overlay: {summary['overlay']}")


@command("tissue", renamed=RENAMED_SLIDE_MPP)
def tissue_command(
    slide: Path = typer.Argument(..., metavar="SLIDE", help="Slide file."),
    tissue_mpp: float = typer.Option(_TISSUE.mpp, "--tissue-mpp", help="Microns per pixel of the detection thumbnail."),
    slide_mpp: float | None = slide_mpp_option(),
    out: Path | None = typer.Option(None, "--out", help="Write the mask (.png or .npz)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Detect tissue on a slide thumbnail; print the tissue fraction and optionally save the mask.

    Without an mpp (none in the file, no --slide-mpp) the detection runs in pixels: --tissue-mpp is
    read as level-0 pixels per mask pixel and the sizes of the tissue settings as level-0 pixels.
    """
    from mrseg.wsi.tissue import check_mask_suffix, tissue_mask

    if not tissue_mpp > 0:
        raise MrsegError(f"--tissue-mpp must be positive, got {tissue_mpp}")
    if out is not None:
        check_mask_suffix(out)
    with Slide.open(slide, mpp=slide_mpp, require_mpp=False) as opened:
        tm = tissue_mask(opened, replace(_TISSUE, mpp=tissue_mpp))
        known = opened.mpp_known
    area_px2 = tm.fraction * (tm.box_l0[2] * tm.box_l0[3])
    result: dict[str, Any] = {
        "slide": str(slide),
        "mpp": opened.mpp if known else None,
        "tissue_mpp": tissue_mpp if known else None,
        "downsample": tissue_mpp / opened.mpp,
        "shape": list(tm.mask.shape),
        "fraction": tm.fraction,
        "tissue_area_px2": area_px2,
        "tissue_area_mm2": area_px2 * opened.mpp**2 / 1e6 if known else None,
    }
    if out is not None:
        result["out"] = str(tm.save(out))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    mask = f"a {tm.mask.shape[1]}x{tm.mask.shape[0]} mask"
    if known:
        where = f"({result['tissue_area_mm2']:.2f} mm^2) on {mask} at {tissue_mpp:g} mpp"
    else:
        where = f"({area_px2:.0f} level-0 px^2) on {mask}, downsample {tissue_mpp:g}; mpp unknown (give --slide-mpp)"
    wrote = f"; wrote {result['out']}" if out is not None else ""
    typer.echo(f"{slide}: tissue fraction {tm.fraction:.3f} {where}{wrote}")
