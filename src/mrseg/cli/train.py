"""CLI commands (registered on :data:`mrseg.cli.app.app`)."""

from __future__ import annotations

from mrseg.cli.app import app  # noqa: F401
