"""OpenMP's wait policy: a short spin unless the user chose one, set before torch is loaded, inherited by children."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import torch  # noqa: F401  # loaded, as in any process that already imported torch

from mrseg.core import openmp
from mrseg.core.openmp import WAIT_VARIABLES, prefer_short_spin


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in WAIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_sets_a_short_spin_unless_the_user_chose(clean_env: pytest.MonkeyPatch) -> None:
    assert prefer_short_spin() is False  # torch is imported in the test process: only children get it
    assert openmp.os.environ["GOMP_SPINCOUNT"] == "10000" and "OMP_WAIT_POLICY" not in openmp.os.environ
    for name, value in (("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "300000"), ("KMP_BLOCKTIME", "0")):
        for other in WAIT_VARIABLES:
            clean_env.delenv(other, raising=False)
        clean_env.setenv(name, value)
        assert prefer_short_spin() is False
        assert openmp.os.environ[name] == value
        assert [n for n in WAIT_VARIABLES if n in openmp.os.environ] == [name]


def test_a_fresh_process_gets_it_before_torch_and_its_children_inherit(clean_env: pytest.MonkeyPatch) -> None:
    code = (
        "import os, subprocess, sys\n"
        "from mrseg.core.openmp import prefer_short_spin\n"
        "print(prefer_short_spin())\n"
        "import torch\n"
        "print(subprocess.run([sys.executable, '-c', 'import os; print(os.environ[\"GOMP_SPINCOUNT\"])'],"
        " capture_output=True, text=True, check=True).stdout.strip())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "10000"]


def test_the_command_line_sets_it_first(monkeypatch: pytest.MonkeyPatch) -> None:
    cli_app = importlib.import_module("mrseg.cli.app")  # the module (mrseg.cli.app is also the typer app's name)
    calls: list[str] = []
    monkeypatch.setattr(cli_app, "prefer_short_spin", lambda: calls.append("wait") or True)
    monkeypatch.setattr(sys, "argv", ["mrseg", "--version"])
    with pytest.raises(SystemExit):
        cli_app.main()
    assert calls == ["wait"]
