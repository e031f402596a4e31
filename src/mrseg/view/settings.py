"""The defaults of a viewer, in one light module (the CLI shows them without importing the web stack)."""

from __future__ import annotations

#: Address the server listens on: this machine only.
DEFAULT_HOST = "127.0.0.1"
#: Port: 0 lets the system choose a free one (the URL is printed).
DEFAULT_PORT = 0
#: Tile-cache budget in MiB.
DEFAULT_CACHE_MB = 256.0

__all__ = ["DEFAULT_CACHE_MB", "DEFAULT_HOST", "DEFAULT_PORT"]
