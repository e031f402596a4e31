"""``mrseg demo``: the paper's experiment end to end on synthetic slides (thin wrapper of :mod:`mrseg.demo`)."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

import typer

from mrseg.cli.app import command
from mrseg.cli.options import device_option
from mrseg.core.errors import ConfigError

log = logging.getLogger("mrseg.cli")


@command("demo")
def demo_command(
    out: Path = typer.Option(Path("mrseg-demo"), "--out", "-o", help="Demo folder (finished stages are reused)."),
    quick: bool = typer.Option(False, "--quick", help="Tiny slides and a few steps (about a minute; smoke test)."),
    device: str = device_option(),
    fresh: bool = typer.Option(False, "--fresh", help="Ignore finished stages and redo everything."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data splits and of training."),
    overrides: list[str] | None = typer.Option(
        None,
        "--set",
        metavar="KEY=VALUE",
        help="Override the shared training recipe, e.g. --set train.epochs=40 (repeatable).",
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help="Slide-generation processes and prediction reader threads (default: the preset's, at most the CPUs).",
    ),
    jobs: int | None = typer.Option(
        None,
        "--jobs",
        help="Models trained and predicted at once, one process each (default: min(2, CPUs); results do not "
        "depend on it).",
    ),
) -> None:
    """The paper's experiment end to end on synthetic slides; prints the metrics table.

    Generates train/val/test synthetic slides, trains U-Nets at 0.5/1/2/4 µm/px and both MRNs,
    predicts, evaluates, and writes OUT/report.html (+ report.md, results.json, PNGs).
    """
    from rich.console import Console

    from mrseg.core.overrides import parse_overrides
    from mrseg.demo import default_settings, quick_settings, run_demo
    from mrseg.demo.report import headline, rich_table
    from mrseg.demo.viewer import view_command

    if workers is not None and workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {workers}")
    settings = (quick_settings if quick else default_settings)(seed=seed, device=device)
    n_workers = workers if workers is not None else min(settings.workers, os.cpu_count() or 1)
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    settings = replace(settings, workers=n_workers, jobs=jobs if jobs is not None else settings.jobs)
    if overrides:
        settings = replace(settings, train={**settings.train, **parse_overrides(overrides)})
    result = run_demo(out, settings, fresh=fresh, progress=sys.stderr.isatty())
    console = Console()
    console.print(rich_table(result.results))
    console.print(headline(result.results), markup=False)
    console.print(f"report: {result.report_html}")
    view = view_command(result.out_dir, result.results["models"])
    console.print(f"to look at the test slides: {view}", soft_wrap=True, markup=False, highlight=False)
