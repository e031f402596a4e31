"""The architecture contract: the data's one-way trip, checked on the source's imports.

Every ``import`` of every module under ``src/mrseg`` (module level and inside functions) is read
with :mod:`ast`. A package may only import the packages listed for it in :data:`ALLOWED`; so
models never import wsi, inference never imports training, evaluation never imports inference or
training, and nothing but the CLI's own modules imports ``mrseg.cli``. Module-level imports among
mrseg's modules must form no cycle. The CLI imports no heavy module at start-up (``mrseg --help``
stays fast).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mrseg"

#: package -> the mrseg packages it may import (besides itself and the top-level ``mrseg`` module).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "wsi": {"core"},
    "synth": {"core", "wsi"},
    "models": {"core"},
    "training": {"core", "wsi", "models"},
    "inference": {"core", "wsi", "models"},
    "evaluation": {"core", "wsi"},
    "view": {"core", "wsi"},
    "demo": {"core", "wsi", "synth", "models", "training", "inference", "evaluation", "view"},
    "cli": {"core", "wsi", "synth", "models", "training", "inference", "evaluation", "view", "demo"},
    "report": {"demo"},
    "__main__": {"cli"},
    "__init__": set(),
}

#: At most this many entries in ``src/mrseg`` besides ``__init__.py``, ``__main__.py``, ``py.typed``, ``configs``.
MAX_TOP_LEVEL = 12


def _module_name(path: Path, src: Path = SRC) -> str:
    rel = path.relative_to(src.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path, src: Path = SRC) -> list[tuple[str, int, bool]]:
    """``(imported mrseg module, line, at module level)`` for every import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module = _module_name(path, src)
    is_pkg = path.name == "__init__.py"
    found: list[tuple[str, int, bool]] = []
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            names = [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]
        else:
            continue
        at_top = id(node) in top or _in_type_checking(tree, node)
        found += [(n, node.lineno, at_top) for n in names if n == "mrseg" or n.startswith("mrseg.")]
    return found


def _in_type_checking(tree: ast.Module, target: ast.AST) -> bool:
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            if any(child is target for child in ast.walk(node)):
                return True
    return False


def _sources(src: Path = SRC) -> list[Path]:
    return sorted(src.rglob("*.py"))


def _existing(name: str, modules: set[str]) -> str | None:
    """The mrseg module an import name refers to (``from pkg import name`` may name a module or an attribute)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def test_layout_shows_the_trip() -> None:
    entries = {p.name for p in SRC.iterdir() if not p.name.startswith(("_", ".")) and p.name != "py.typed"}
    entries -= {"configs"}
    entries = {e.removesuffix(".py") for e in entries if e.endswith(".py") or (SRC / e).is_dir()}
    assert len(entries) <= MAX_TOP_LEVEL, sorted(entries)
    assert {"core", "wsi", "models", "training", "inference", "evaluation", "synth", "demo", "cli"} <= entries


def layer_violations(src: Path = SRC) -> list[str]:
    """Every import of a package that :data:`ALLOWED` does not list for it, as ``file:line: what``."""
    modules = {_module_name(p, src) for p in _sources(src)}
    problems = []
    for path in _sources(src):
        module = _module_name(path, src)
        package = _package(module)
        allowed = ALLOWED.get(package)
        if allowed is None:
            problems.append(f"{module}: package {package!r} has no entry in ALLOWED")
            continue
        for name, line, _ in _imports(path, src):
            target = _existing(name, modules)
            if target is None or target == "mrseg":
                continue
            other = _package(target)
            problem = f"{path.relative_to(src.parent)}:{line}: {package} imports {target}"
            if other != package and other not in allowed and problem not in problems:
                problems.append(problem)
    return problems


def test_packages_import_only_upstream() -> None:
    problems = layer_violations()
    assert not problems, "\n".join(problems)


def test_no_import_cycles() -> None:
    modules = {_module_name(p): p for p in _sources()}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        deps = set()
        for name, _, at_top in _imports(path):
            target = _existing(name, set(modules))
            if at_top and target is not None and target != module and not module.startswith(target + "."):
                deps.add(target)
        graph[module] = deps
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if state.get(dep) is None:
                cycle = visit(dep)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None:
            cycle = visit(node)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_contract_catches_violations(tmp_path: Path) -> None:
    """The checker itself, on a small fake tree: upstream imports and imports of the CLI are reported."""
    src = tmp_path / "mrseg"
    for rel, text in {
        "__init__.py": "",
        "wsi/__init__.py": "",
        "wsi/slide.py": "import numpy\n",
        "models/__init__.py": "",
        "models/net.py": "from mrseg.wsi.slide import Slide\n",
        "cli/__init__.py": "",
        "inference/__init__.py": "",
        "inference/run.py": "def f():\n    from mrseg import cli\n",
    }.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    problems = layer_violations(src)
    assert any("models imports mrseg.wsi.slide" in p for p in problems), problems
    assert any("inference imports mrseg.cli" in p for p in problems), problems
    assert len(problems) == 2


@pytest.mark.slow
def test_cli_start_up_imports_no_heavy_module() -> None:
    code = (
        "import sys, mrseg.cli; print(sorted(m for m in ('torch', 'dask', 'distributed', 'onnx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
