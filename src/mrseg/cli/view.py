"""``mrseg view``: slides, probability maps and annotations in the browser (a thin layer over :mod:`mrseg.view`).

Every option's default is the library's (:mod:`mrseg.view.settings`, :func:`mrseg.view.catalog.build_catalog`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from mrseg.cli.app import command
from mrseg.cli.options import backend_option, slide_mpp_option
from mrseg.core.errors import ConfigError
from mrseg.view.settings import DEFAULT_CACHE_MB, DEFAULT_HOST, DEFAULT_PORT

log = logging.getLogger("mrseg.cli")


@command("view")
def view_command(
    source: Path = typer.Argument(
        ..., metavar="SLIDE|FOLDER", help="A slide, or a folder of slides (a manifest's slides and annotations)."
    ),
    pred: list[str] | None = typer.Option(
        None, "--pred", metavar="[NAME=]DIR", help="Prediction folder of mrseg predict, or NAME=DIR; repeatable."
    ),
    truth: Path | None = typer.Option(
        None, "--truth", help="Ground truth: a file (one slide), or a folder of files named after the slides."
    ),
    slide_mpp: float | None = slide_mpp_option(),
    backend: str = backend_option(),
    host: str = typer.Option(DEFAULT_HOST, "--host", help="Address to listen on (127.0.0.1: this machine only)."),
    port: int = typer.Option(DEFAULT_PORT, "--port", help="Port to listen on (0: a free one)."),
    cache_mb: float = typer.Option(DEFAULT_CACHE_MB, "--cache-mb", help="Tile cache size in MiB."),
    open_browser: bool = typer.Option(False, "--open", help="Open the viewer in the default web browser."),
) -> None:
    """Serve slides with their predictions and ground truth to a web browser; prints the URL. Ctrl-C stops it.

    Deep zoom of each slide with every model's probability map as a heatmap (colormap, threshold,
    opacity), ground-truth outlines and predicted contours; 1-6 synchronised panes, one model each;
    a probe shows every model's probability under the pointer. Read-only; everything is checked at
    start-up (a slide that cannot be read, a map that does not match its slide: one-line error).
    """
    import webbrowser

    from mrseg.view.catalog import build_catalog, parse_predictions
    from mrseg.view.server import ViewServer

    if slide_mpp is not None and not slide_mpp > 0:
        raise ConfigError(f"--slide-mpp must be positive, got {slide_mpp}")
    if not cache_mb >= 0:
        raise ConfigError(f"--cache-mb must be >= 0, got {cache_mb}")
    catalog = build_catalog(source, parse_predictions(pred or []), truth, slide_mpp=slide_mpp, backend=backend)
    try:
        server = ViewServer(catalog, host, port, cache_mb=cache_mb)
    except BaseException:
        catalog.close()
        raise
    typer.echo(f"mrseg view: {len(catalog.slides)} slide(s), {len(catalog.predictions)} model(s) at {server.url}")
    typer.echo("press Ctrl-C to stop")
    if open_browser:
        webbrowser.open(server.url)
    server.serve()
    typer.echo("stopped")
