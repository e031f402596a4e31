"""The ``mrseg`` command line: a thin typer layer over the library API.

Each sub-command lives in a module of this package that registers itself on :data:`app` with
:func:`mrseg.cli.app.command`; ``mrseg --help`` lists them in the order of the data's trip
(:data:`mrseg.cli.app.COMMAND_ORDER`). Option defaults come from the library
(:mod:`mrseg.cli.options`). Errors derived from :class:`mrseg.core.errors.MrsegError` are printed
as one line on stderr and exit with status 1 (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

from mrseg.cli.app import app, main

# Command modules register themselves on import.
# (not ``from mrseg.cli import annotations``: that name is the ``__future__`` feature imported above)
import mrseg.cli.annotations as _annotations  # noqa: F401  # isort: skip
from mrseg.cli import demo as _demo  # noqa: F401  # isort: skip
from mrseg.cli import evaluate as _evaluate  # noqa: F401  # isort: skip
from mrseg.cli import models as _models  # noqa: F401  # isort: skip
from mrseg.cli import predict as _predict  # noqa: F401  # isort: skip
from mrseg.cli import slides as _slides  # noqa: F401  # isort: skip
from mrseg.cli import synth as _synth  # noqa: F401  # isort: skip
from mrseg.cli import train as _train  # noqa: F401  # isort: skip
from mrseg.cli import view as _view  # noqa: F401  # isort: skip

__all__ = ["app", "main"]
