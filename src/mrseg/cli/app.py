"""The typer application, its command classes, the global options and the error handling shared by all commands.

Commands register themselves with :func:`command` (not ``app.command``): that gives them
:class:`MrsegCommand`, which shows flags without a ``<bool>`` type, keeps renamed options working
(with a deprecation warning), and lists them in ``mrseg --help`` in the order of the data's trip
(:data:`COMMAND_ORDER`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import typer
from typer.core import TyperCommand, TyperGroup

from mrseg import __version__
from mrseg.cli.errors import demote_third_party_logs, error_line
from mrseg.core.openmp import prefer_short_spin

log = logging.getLogger("mrseg")

#: ``mrseg --help`` lists the commands in the order of the trip: slides, synthetic data, networks,
#: training, prediction, evaluation, the demo that runs them all. Commands not listed come last.
COMMAND_ORDER: tuple[str, ...] = (
    "info", "patch", "annotations", "tissue", "synth", "models", "export", "train", "predict", "evaluate", "view",
    "demo",
)  # fmt: skip


def _is_cli_control(error: BaseException) -> bool:
    """typer's and click's exceptions (exit, abort, usage errors) are theirs to report."""
    return type(error).__module__.split(".")[0] in ("typer", "click")


def hide_flag_types(params: Iterable[Any]) -> list[Any]:
    """Flags (``--json``, ``--x/--no-x``, ``-v`` counts) take no value: give them an empty metavar.

    typer's help would otherwise show a ``<bool>`` (or ``<int>``) type column for them.
    """
    params = list(params)
    for param in params:
        takes_no_value = getattr(param, "is_flag", False) or getattr(param, "count", False)
        if takes_no_value and param.metavar is None:
            param.metavar = ""
    return params


def rename_deprecated(args: list[str], renamed: Mapping[str, str], command: str) -> list[str]:
    """``args`` with each deprecated option name (``--old`` or ``--old=VALUE``) replaced by its new name.

    One line on stderr per deprecated name used says the new one. Arguments after ``--`` are kept as they are.
    """
    out: list[str] = []
    warned: set[str] = set()
    for index, token in enumerate(args):
        if token == "--":
            return [*out, *args[index:]]
        name, eq, value = token.partition("=")
        if name in renamed:
            if name not in warned:
                typer.echo(f"warning: mrseg {command} {name} is deprecated; use {renamed[name]}", err=True)
                warned.add(name)
            token = f"{renamed[name]}{eq}{value}"
        out.append(token)
    return out


class MrsegGroup(TyperGroup):
    """The ``mrseg`` group: errors as one line, commands in the trip's order, flags without a type."""

    def invoke(self, ctx: Any) -> Any:  # typer >= 0.23 vendors its own click Context
        """Turn an error into one line ``error: ...`` on stderr and exit status 1 (``--debug``: raise).

        The line comes from :func:`mrseg.cli.errors.error_line`; typer's and click's own exceptions
        (usage errors, ``typer.Exit``) pass through.
        """
        try:
            return super().invoke(ctx)
        except Exception as error:
            if _is_cli_control(error) or (ctx.obj or {}).get("debug"):
                raise
            typer.echo(f"error: {error_line(error, ctx.invoked_subcommand or 'mrseg')}", err=True)
            ctx.exit(1)

    def list_commands(self, ctx: Any) -> list[str]:
        """The registered commands, in :data:`COMMAND_ORDER` (others after them, in registration order)."""
        names = list(self.commands)
        rank = {name: index for index, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda name: (rank.get(name, len(rank)), names.index(name)))

    def get_params(self, ctx: Any) -> list[Any]:
        return hide_flag_types(super().get_params(ctx))


class MrsegCommand(TyperCommand):
    """An ``mrseg`` command: flags without a type, and the deprecated option names of :attr:`renamed`."""

    #: Deprecated option name -> its new name (``{"--mpp": "--slide-mpp"}``); set by :func:`command`.
    renamed: ClassVar[Mapping[str, str]] = {}

    def get_params(self, ctx: Any) -> list[Any]:
        return hide_flag_types(super().get_params(ctx))

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, rename_deprecated(args, self.renamed, self.name or ""))


app = typer.Typer(
    name="mrseg",
    cls=MrsegGroup,
    help="Multi-resolution semantic segmentation of whole-slide images (MRN, Gu et al. 2018).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def command(name: str, *, renamed: Mapping[str, str] | None = None, **settings: Any) -> Callable[..., Any]:
    """Register a function as the ``mrseg NAME`` command (a :class:`MrsegCommand`).

    ``renamed`` maps deprecated option names to their new names; ``settings`` go to ``app.command``.
    """
    cls: type[MrsegCommand] = MrsegCommand
    if renamed:
        cls = type(f"{name.title()}Command", (MrsegCommand,), {"renamed": dict(renamed)})
    return app.command(name, cls=cls, **settings)


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

    demote_third_party_logs()
    root = logging.getLogger("mrseg")
    root.setLevel(level)
    if not any(getattr(h, "_mrseg", False) for h in root.handlers):
        rich_handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False, markup=False)
        rich_handler._mrseg = True  # type: ignore[attr-defined]
        root.addHandler(rich_handler)
    for handler in root.handlers:
        handler.setLevel(level)


def main() -> None:
    """Console-script entry point (it sets OpenMP's wait policy before any command imports torch)."""
    prefer_short_spin()
    sys.exit(app(standalone_mode=True) or 0)
