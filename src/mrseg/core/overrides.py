"""The one parser of ``--set key=value`` overrides (training config, demo recipe).

Values are parsed as YAML (``2``, ``0.5``, ``[0.5, 1.0]``, ``true``, ``null``), so types follow the
field they set; whoever applies them validates the keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from mrseg.core.errors import ConfigError


def parse_overrides(items: Sequence[str], *, option: str = "--set") -> dict[str, Any]:
    """``["train.epochs=40", "model.mpps=[0.5, 1]"]`` -> ``{"train.epochs": 40, "model.mpps": [0.5, 1]}``.

    An empty value (``key=``) means ``None``. Later items win over earlier ones for the same key.

    Raises
    ------
    ConfigError
        An item is not ``key=value``, or its value is not valid YAML (the key is named).
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{option} {item!r}: expected key=value, e.g. train.epochs=2")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as error:
            raise ConfigError(f"{option} {key}: value {raw!r} is not valid YAML ({yaml_problem(error)})") from None
    return out


def yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML error in one line: ``line 1, column 8: expected ',' or ']'`` (PyYAML's text spans lines)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None)
    if mark is not None and problem:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return " ".join(str(error).split())


__all__ = ["parse_overrides", "yaml_problem"]
