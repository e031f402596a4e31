"""The old option spellings keep working, each with one deprecation line on stderr naming the new one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mrseg.cli import app
from mrseg.cli.app import rename_deprecated

runner = CliRunner()
GROUP = typer.main.get_command(app)

#: command, old spelling, new spelling, the other arguments the command needs, the parameter and its value.
DEPRECATED = [
    ("info", "--mpp", "--slide-mpp", ["s.tif"], "slide_mpp", 0.5),
    ("patch", "--mpp", "--mpps", ["s.tif", "--center", "1", "1", "--out", "f.png"], "mpps", ["0.5"]),
    ("annotations", "--mpp", "--slide-mpp", ["a.xml"], "slide_mpp", 0.5),
    ("tissue", "--mpp", "--slide-mpp", ["s.tif"], "slide_mpp", 0.5),
    ("synth", "--mpp", "--slide-mpp", ["out"], "slide_mpp", 0.5),
    ("predict", "--mpp", "--slide-mpp", ["m.pt", "s.tif", "--out", "o"], "slide_mpp", 0.5),
    ("evaluate", "--mpp", "--eval-mpp", ["--pred", "p", "--truth", "t", "--out", "o"], "eval_mpp", 0.5),
]


def _warning(command: str, old: str, new: str) -> str:
    return f"warning: mrseg {command} {old} is deprecated; use {new}"


@pytest.mark.parametrize(("command", "old", "new", "args", "param", "value"), DEPRECATED, ids=lambda v: str(v))
def test_old_spelling_sets_the_new_option_and_warns(
    capsys: pytest.CaptureFixture[str], command: str, old: str, new: str, args: list[str], param: str, value: object
) -> None:
    cmd = GROUP.commands[command]
    for spelling in ([old, "0.5"], [f"{old}=0.5"]):
        ctx = cmd.make_context(command, [*args, *spelling])
        assert ctx.params[param] == value
        assert capsys.readouterr().err.splitlines() == [_warning(command, old, new)]
    ctx = cmd.make_context(command, [*args, new, "0.5"])
    assert ctx.params[param] == value
    assert capsys.readouterr().err == ""


def test_every_renamed_option_is_tested() -> None:
    renamed = {(name, old, new) for name, c in GROUP.commands.items() for old, new in getattr(c, "renamed", {}).items()}
    assert renamed == {(c, old, new) for c, old, new, *_ in DEPRECATED}


def test_rename_deprecated_keeps_everything_else() -> None:
    renamed = {"--mpp": "--slide-mpp"}
    args = ["--mpp", "1", "--mpps", "2", "--mpp=3", "--set", "a=--mpp", "--", "--mpp"]
    assert rename_deprecated(args, renamed, "x") == [
        "--slide-mpp", "1", "--mpps", "2", "--slide-mpp=3", "--set", "a=--mpp", "--", "--mpp",
    ]  # fmt: skip


def test_old_spellings_end_to_end(tmp_path: Path, slide: Path) -> None:
    result = runner.invoke(app, ["info", str(slide), "--mpp", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mpp"] == 0.5
    assert result.stderr.splitlines() == [_warning("info", "--mpp", "--slide-mpp")]
    out = tmp_path / "fig.png"
    args = ["patch", str(slide), "--center", "160", "128", "--mpp", "1", "2", "--size", "16", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 patches of 16 px at 1 2 um/px" in result.stdout and out.is_file()
    assert result.stderr.splitlines() == [_warning("patch", "--mpp", "--mpps")]
    result = runner.invoke(app, ["tissue", str(slide), "--mpp", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tissue_area_mm2"] == pytest.approx(4 * 200 * 150 / 1e6, rel=0.1)
    assert result.stderr.splitlines() == [_warning("tissue", "--mpp", "--slide-mpp")]


def test_old_spelling_errors_still_one_line_each(slide: Path) -> None:
    result = runner.invoke(app, ["info", str(slide), "--mpp", "-1"])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == _warning("info", "--mpp", "--slide-mpp") and lines[1].startswith("error: ") and len(lines) == 2
