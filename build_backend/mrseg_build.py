"""mrseg's PEP 517 build backend: setuptools', plus the viewer's OpenSeadragon fetched from the npm registry.

``mrseg view`` draws slides with OpenSeadragon, a JavaScript deep-zoom viewer. It is a dependency, never
a copy in the repository: before setuptools builds a wheel, an editable install or an sdist, this
backend downloads the pinned npm tarball (:data:`VERSION`), checks it against the registry's
``dist.integrity`` (:data:`INTEGRITY`, sha512), and extracts the minified script, its button images and
its licence into :data:`DEST` (git-ignored, shipped as package data). A folder that already holds
this version is kept, so builds from an sdist (which contains the files) need no network.

``MRSEG_OPENSEADRAGON_TGZ=/path/to/openseadragon-<VERSION>.tgz`` uses a local copy of the tarball
instead of the download (it is checked the same way).

Updating: ``npm view openseadragon@X version dist.tarball dist.integrity`` gives the three values.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the hooks this module does not wrap)

#: The pinned OpenSeadragon release.
VERSION = "6.1.1"
#: Its tarball on the npm registry.
TARBALL_URL = f"https://registry.npmjs.org/openseadragon/-/openseadragon-{VERSION}.tgz"
#: The registry's ``dist.integrity`` of that tarball (Subresource-Integrity form: ``sha512-<base64>``).
INTEGRITY = "sha512-g4iKe2q8B642SaBT3+x4ZF3/8b1TxPPydyjmtrOLgDrlYWMKd9ZXM+1Cb/xa9DVySkvs/7l6HR1nHKfD5F3Tsw=="
#: Where the files go: inside the package, so that wheels and editable installs serve them.
DEST = Path(__file__).resolve().parents[1] / "src" / "mrseg" / "view" / "static" / "openseadragon"
#: Tarball members extracted (prefix -> path under DEST).
MEMBERS = {
    "package/build/openseadragon/openseadragon.min.js": "openseadragon.min.js",
    "package/build/openseadragon/images/": "images/",
    "package/LICENSE.txt": "LICENSE.txt",
}
#: Written last into DEST: what was installed (the viewer reads it).
STAMP = "openseadragon.json"
ENV_TARBALL = "MRSEG_OPENSEADRAGON_TGZ"
TIMEOUT_S = 60


class FetchError(RuntimeError):
    """The OpenSeadragon tarball could not be downloaded, or is not the pinned one."""


def installed(dest: Path = DEST, version: str = VERSION, integrity: str = INTEGRITY) -> bool:
    """Whether ``dest`` already holds this version (its stamp names the same version and integrity)."""
    try:
        stamp = json.loads((dest / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(stamp, dict)
        and stamp.get("version") == version
        and stamp.get("integrity") == integrity
        and (dest / "openseadragon.min.js").is_file()
    )


def check_integrity(data: bytes, integrity: str, source: str) -> None:
    """Raise :class:`FetchError` unless ``data`` has the ``sha512-<base64>`` digest ``integrity``."""
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512" or not expected:
        raise FetchError(f"unsupported integrity {integrity!r} (expected sha512-<base64>)")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise FetchError(f"{source}: sha512 integrity mismatch (expected {expected}, got {actual}); refusing it")


def download(url: str = TARBALL_URL, timeout: float = TIMEOUT_S) -> bytes:
    """The bytes at ``url`` (:class:`FetchError` with the reason and the offline way out when it fails)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bytes(response.read())
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise FetchError(
            f"could not download OpenSeadragon {VERSION} (the deep-zoom viewer of `mrseg view`) from {url}: "
            f"{reason}. Connect to the npm registry, or download that file elsewhere and set "
            f"{ENV_TARBALL}=/path/to/openseadragon-{VERSION}.tgz"
        ) from None


def extract(data: bytes, dest: Path, members: dict[str, str] = MEMBERS) -> list[str]:
    """Extract the :data:`MEMBERS` of the tarball ``data`` into ``dest`` (replaced whole); return the paths written."""
    written: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mrseg-osd-") as scratch:
        out = Path(scratch) / "openseadragon"
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                target = _target(member.name, members)
                if target is None or not member.isfile():
                    continue
                path = out / target
                path.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                path.write_bytes(source.read())
                written.append(target)
        missing = [t for t in members.values() if not t.endswith("/") and t not in written]
        if missing:
            raise FetchError(f"the OpenSeadragon tarball lacks {missing}")
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(out), str(dest))
    return sorted(written)


def _target(name: str, members: dict[str, str]) -> str | None:
    """Path under DEST of tarball member ``name`` (None: not wanted). Names with ``..`` are never wanted."""
    if ".." in Path(name).parts or name.startswith("/"):
        return None
    for prefix, target in members.items():
        if prefix.endswith("/") and name.startswith(prefix) and "/" not in name[len(prefix) :]:
            return target + name[len(prefix) :]
        if name == prefix:
            return target
    return None


def fetch_openseadragon(
    dest: Path = DEST,
    *,
    url: str = TARBALL_URL,
    integrity: str = INTEGRITY,
    version: str = VERSION,
    tarball: str | os.PathLike[str] | None = None,
) -> Path:
    """Make ``dest`` hold OpenSeadragon ``version`` (download, check, extract; nothing when already there).

    ``tarball`` (default: ``$MRSEG_OPENSEADRAGON_TGZ``) is a local copy used instead of the download.

    Raises
    ------
    FetchError
        Download failed, or the tarball is not the pinned one.
    """
    if installed(dest, version, integrity):
        return dest
    local = tarball if tarball is not None else os.environ.get(ENV_TARBALL)
    if local:
        try:
            data, source = Path(local).read_bytes(), str(local)
        except OSError as error:
            raise FetchError(f"{local}: cannot read the OpenSeadragon tarball ({error.strerror or error})") from None
    else:
        data, source = download(url), url
    check_integrity(data, integrity, source)
    extract(data, dest)
    stamp = {"name": "openseadragon", "version": version, "integrity": integrity, "tarball": url}
    stamp["license"] = "BSD-3-Clause"
    (dest / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
    return dest


# -- the PEP 517 hooks that build something: fetch first, then setuptools ------------------------------


def build_wheel(wheel_directory: str, config_settings: Any = None, metadata_directory: str | None = None) -> str:
    fetch_openseadragon()
    return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory: str, config_settings: Any = None, metadata_directory: str | None = None) -> str:
    fetch_openseadragon()
    return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory: str, config_settings: Any = None) -> str:
    fetch_openseadragon()
    return _setuptools.build_sdist(sdist_directory, config_settings)
