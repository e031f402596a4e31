"""``--help``: commands in the order of the trip, flags without a ``<bool>`` type, and a snapshot of every page.

The snapshot (``help.txt``) is the rendered help of ``mrseg`` and of each command at 120 columns.
After a deliberate change of an option or a help text, rewrite it with
``MRSEG_UPDATE_SNAPSHOTS=1 pytest tests/cli/test_cli_help.py`` and review the diff. Its first line
records the typer and rich versions it was rendered with; with other versions the layout may
differ, so only the version-independent checks run.
"""

from __future__ import annotations

import os
import re
from importlib.metadata import version
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mrseg.cli import app
from mrseg.cli.app import COMMAND_ORDER

SNAPSHOT = Path(__file__).with_name("help.txt")
VERSIONS = f"typer {version('typer')}, rich {version('rich')}"
runner = CliRunner(env={"COLUMNS": "120"})
GROUP = typer.main.get_command(app)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def help_page(*command: str) -> str:
    """The rendered ``mrseg [COMMAND] --help`` (colour codes removed, trailing spaces stripped)."""
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    return "\n".join(line.rstrip() for line in _ANSI.sub("", result.stdout).splitlines()).strip("\n")


def all_pages() -> str:
    pages = [f"$ mrseg --help\n{help_page()}"]
    pages += [f"$ mrseg {name} --help\n{help_page(name)}" for name in COMMAND_ORDER]
    return f"# rendered with {VERSIONS}\n\n" + "\n\n".join(pages) + "\n"


def test_commands_are_listed_in_the_order_of_the_trip() -> None:
    assert GROUP.list_commands(None) == list(COMMAND_ORDER)  # type: ignore[arg-type]
    text = help_page()
    positions = [re.search(rf"^│ {name} ", text, re.MULTILINE) for name in COMMAND_ORDER]
    assert all(positions), text
    starts = [m.start() for m in positions if m]
    assert starts == sorted(starts), text


@pytest.mark.parametrize("command", ["", *COMMAND_ORDER])
def test_flags_show_no_type(command: str) -> None:
    text = help_page(*([command] if command else []))
    assert "<bool>" not in text
    assert not re.search(r"--verbose\s+-v\s+<int>", text)
    assert re.search(r"--help\s+-h\s+Show this message", text)


def test_help_snapshot() -> None:
    text = all_pages()
    if os.environ.get("MRSEG_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(text)
    expected = SNAPSHOT.read_text()
    if expected.splitlines()[0] != text.splitlines()[0]:
        pytest.skip(f"snapshot rendered with other versions ({expected.splitlines()[0]}; here {VERSIONS})")
    assert text == expected, "help changed: review, then MRSEG_UPDATE_SNAPSHOTS=1 pytest tests/cli/test_cli_help.py"
