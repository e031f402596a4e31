"""The typer application object, global options and error handling shared by all commands."""

from __future__ import annotations

import logging
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from mrseg import __version__
from mrseg.core.errors import MrsegError

log = logging.getLogger("mrseg")


class _MrsegGroup(TyperGroup):
    """Turns :class:`MrsegError` into one line on stderr and exit status 1."""

    def invoke(self, ctx: Any) -> Any:  # typer >= 0.23 vendors its own click Context
        try:
            return super().invoke(ctx)
        except MrsegError as error:
            if (ctx.obj or {}).get("debug"):
                raise
            typer.echo(f"error: {error}", err=True)
            ctx.exit(1)


app = typer.Typer(
    name="mrseg",
    cls=_MrsegGroup,
    help="Multi-resolution semantic segmentation of whole-slide images (MRN, Gu et al. 2018).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


#: Context settings of commands whose list options take several values (``--mpps 0.5 1 2 4``).
MULTI_VALUE_ARGS: dict[str, Any] = {"allow_extra_args": True, "ignore_unknown_options": False}


def parse_numbers(option: str, first: list[str] | None, extra: list[str]) -> list[float]:
    """``OPT 0.5 1 2 4``, ``OPT 0.5 OPT 1`` and ``OPT 0.5,1,2,4`` all give ``[0.5, 1, 2, 4]``.

    ``first`` holds the option's own values, ``extra`` the command's extra arguments (``ctx.args``).

    Raises
    ------
    ConfigError
        A token is not a number.
    """
    from mrseg.core.errors import ConfigError

    tokens = [t for value in [*(first or []), *extra] for t in value.replace(",", " ").split()]
    try:
        return [float(t) for t in tokens]
    except ValueError as error:
        raise ConfigError(f"{option} takes numbers (microns per pixel), got {tokens}") from error


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mrseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Multi-resolution semantic segmentation of whole-slide images."""
    ctx.obj = {"debug": debug}
    level = logging.WARNING if quiet else (logging.DEBUG if verbose >= 2 or debug else logging.INFO)
    setup_logging(level)


def setup_logging(level: int = logging.INFO) -> None:
    """Send mrseg's log records to stderr through rich (idempotent)."""
    from rich.console import Console
    from rich.logging import RichHandler

    root = logging.getLogger("mrseg")
    root.setLevel(level)
    if not any(getattr(h, "_mrseg", False) for h in root.handlers):
        rich_handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False, markup=False)
        rich_handler._mrseg = True  # type: ignore[attr-defined]
        root.addHandler(rich_handler)
    for handler in root.handlers:
        handler.setLevel(level)


def main() -> None:
    """Console-script entry point."""
    sys.exit(app(standalone_mode=True) or 0)
