"""Options shared by several commands, each with one name and one meaning everywhere.

mpp options are named by their frame:

- ``--slide-mpp``: microns per level-0 pixel of the slide (an override of its metadata; for
  ``mrseg synth``, the generated slides' level-0 mpp);
- ``--mpps``: the input resolutions of a model, finest first;
- ``--tissue-mpp``: the resolution of the tissue mask;
- ``--out-mpp`` (predict): the resolution of the probability map; ``--eval-mpp`` (evaluate): of the
  evaluation grid.

Defaults come from the library: :class:`~mrseg.inference.settings.PredictSettings`,
:class:`~mrseg.evaluation.settings.EvaluateSettings`, :class:`~mrseg.core.tissue_spec.TissueSettings`
and the backend registry here; ``tests/cli/test_cli_defaults.py`` checks every command's defaults
against the library's (including those of torch-heavy modules, which the CLI does not import at start-up).
"""

from __future__ import annotations

from typing import Any

import typer

from mrseg.core.errors import ConfigError
from mrseg.core.input_spec import check_mpps
from mrseg.wsi.backends.registry import AUTO, AUTO_ORDER, backend_names, check_backend

#: Context settings of commands whose list options take several values (``--mpps 0.5 1 2 4``).
MULTI_VALUE_ARGS: dict[str, Any] = {"allow_extra_args": True, "ignore_unknown_options": False}

#: The paper's four input resolutions (µm/px, finest first): the default of ``--mpps``
#: (the training config's ``model.mpps`` default; the test of the defaults keeps them equal).
DEFAULT_MPPS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)

#: The default patch edge in pixels (the training config's ``model.patch_size``).
DEFAULT_PATCH_PX = 512

DEVICE_HELP = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps."

#: Deprecated spelling of the level-0 override (and of ``mrseg synth``'s slide mpp): ``--slide-mpp``.
RENAMED_SLIDE_MPP: dict[str, str] = {"--mpp": "--slide-mpp"}


def parse_numbers(option: str, first: list[str] | None, extra: list[str]) -> list[float]:
    """``OPT 0.5 1 2 4``, ``OPT 0.5 OPT 1`` and ``OPT 0.5,1,2,4`` all give ``[0.5, 1, 2, 4]``.

    ``first`` holds the option's own values, ``extra`` the command's extra arguments (``ctx.args``).

    Raises
    ------
    ConfigError
        A token is not a number.
    """
    tokens = [t for value in [*(first or []), *extra] for t in value.replace(",", " ").split()]
    try:
        return [float(t) for t in tokens]
    except ValueError as error:
        raise ConfigError(f"{option} takes numbers (microns per pixel), got {tokens}") from error


def mpps_option(help: str) -> Any:
    """``--mpps M1 M2 ...`` (input resolutions, finest first; default :data:`DEFAULT_MPPS`)."""
    return typer.Option(
        [f"{m:g}" for m in DEFAULT_MPPS], "--mpps", metavar="MPP...", help=f"{help} Finest first: --mpps 0.5 1 2 4."
    )


def mpps_value(ctx: typer.Context, values: list[str]) -> tuple[float, ...]:
    """The resolutions of ``--mpps`` (its values and the extra arguments that follow them), checked.

    Raises
    ------
    ConfigError
        Extra arguments without ``--mpps`` given, a value that is not a number, or resolutions that
        break :func:`mrseg.core.input_spec.check_mpps`.
    """
    source = ctx.get_parameter_source("mpps")
    if ctx.args and (source is None or source.name == "DEFAULT"):
        raise ConfigError(f"unexpected arguments {ctx.args}")
    return check_mpps(parse_numbers("--mpps", values, list(ctx.args)), what="--mpps")


def slide_mpp_option() -> Any:
    """``--slide-mpp``: microns per level-0 pixel of the slide, overriding its metadata (default: the metadata's)."""
    return typer.Option(
        None,
        "--slide-mpp",
        help="Microns per level-0 pixel of the slide (overrides its metadata; needed for slides without).",
    )


def _checked_backend(value: str) -> str:
    check_backend(value)
    return value


def backend_option() -> Any:
    """``--backend NAME``: a name of :func:`mrseg.wsi.backends.registry.backend_names` (checked on parsing)."""
    names = backend_names()
    return typer.Option(
        AUTO,
        "--backend",
        callback=_checked_backend,
        help=f"Slide backend: {', '.join(names[:-1])} or {names[-1]} ({AUTO} tries {', then '.join(AUTO_ORDER)}).",
    )


def device_option(default: str = "auto") -> Any:
    """``--device auto|cpu|cuda|cuda:N|mps`` (``auto`` in every command: training, prediction, the demo)."""
    return typer.Option(default, "--device", help=DEVICE_HELP)
