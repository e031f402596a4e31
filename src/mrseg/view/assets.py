"""The viewer's front end: its own page, script and style, and OpenSeadragon, read into memory once.

``static/`` holds ``index.html`` (the slide list), ``viewer.html``, ``viewer.js`` (panes and controls),
``vectors.js`` (outlines, scale bar, probe), ``viewer.css`` and ``openseadragon/`` (the deep-zoom
library; not in the repository: the build backend ``build_backend/mrseg_build.py`` fetches the pinned
release from the npm registry when mrseg is installed, with its licence, and stamps it in
``openseadragon/openseadragon.json``). The server answers ``/static/<name>`` from the dictionary read
here: a URL names a key, never a path.
"""

from __future__ import annotations

import json
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrseg.core.errors import MrsegError

#: The folder of the front-end files.
STATIC = Path(__file__).resolve().parent / "static"
#: The stamp the build backend writes beside OpenSeadragon.
OSD_STAMP = "openseadragon/openseadragon.json"
#: Files the pages cannot work without.
REQUIRED = (
    "index.html",
    "viewer.html",
    "viewer.js",
    "vectors.js",
    "viewer.css",
    "openseadragon/openseadragon.min.js",
    OSD_STAMP,
)


class AssetsMissing(MrsegError):
    """The front-end files (OpenSeadragon above all) are not installed."""


@dataclass(frozen=True)
class Assets:
    """Front-end files by name (``"viewer.js"``, ``"openseadragon/images/home_rest.png"``...).

    Attributes
    ----------
    files
        ``{name: (bytes, media type)}``.
    openseadragon
        The installed OpenSeadragon stamp (``version``, ``integrity``, ``tarball``, ``license``).
    """

    files: dict[str, tuple[bytes, str]]
    openseadragon: dict[str, Any]

    def get(self, name: str) -> tuple[bytes, str] | None:
        return self.files.get(name)


def load_assets(root: Path = STATIC) -> Assets:
    """Read every front-end file under ``root``.

    Raises
    ------
    AssetsMissing
        A required file is absent (OpenSeadragon is fetched when mrseg is installed: ``pip install -e .``).
    """
    missing = [name for name in REQUIRED if not (root / name).is_file()]
    if missing:
        raise AssetsMissing(
            f"{root}: the viewer's front end lacks {', '.join(missing)}; OpenSeadragon is fetched from the npm "
            "registry when mrseg is installed: reinstall it (pip install -e . in the source tree)"
        )
    files: dict[str, tuple[bytes, str]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if media.startswith("text/") or name.endswith(".js"):
            media = ("text/javascript" if name.endswith(".js") else media) + "; charset=utf-8"
        files[name] = (path.read_bytes(), media)
    stamp = json.loads(files[OSD_STAMP][0])
    return Assets(files, stamp if isinstance(stamp, dict) else {})


__all__ = ["OSD_STAMP", "REQUIRED", "STATIC", "Assets", "AssetsMissing", "load_assets"]
