"""The front end's third-party part: OpenSeadragon fetched by the build backend (pinned, integrity-checked,
extracted safely, stamped), and the viewer's refusal to start without it."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import socket
import tarfile
from pathlib import Path

import pytest

from mrseg.view.assets import STATIC, AssetsMissing, load_assets
from view_scenes import build_backend as backend


def tarball(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


FAKE = {
    "package/build/openseadragon/openseadragon.min.js": b"window.OpenSeadragon = function () {};",
    "package/build/openseadragon/openseadragon.js": b"// not wanted",
    "package/build/openseadragon/images/home_rest.png": b"png",
    "package/LICENSE.txt": b"BSD-3-Clause",
    "package/build/openseadragon/images/../../../../../escape.txt": b"never written",
}


def test_fetch_checks_extracts_and_stamps(tmp_path: Path) -> None:
    b = backend()
    data = tarball(FAKE)
    (tmp_path / "osd.tgz").write_bytes(data)
    dest = tmp_path / "static" / "openseadragon"
    b.fetch_openseadragon(dest, tarball=tmp_path / "osd.tgz", integrity=integrity(data), version="9.9.9")
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == ["LICENSE.txt", "images/home_rest.png", "openseadragon.json", "openseadragon.min.js"]
    assert not list(tmp_path.rglob("escape.txt"))
    stamp = json.loads((dest / "openseadragon.json").read_text())
    assert stamp["version"] == "9.9.9" and stamp["integrity"] == integrity(data)
    assert b.installed(dest, "9.9.9", integrity(data)) and not b.installed(dest, b.VERSION, b.INTEGRITY)
    (tmp_path / "osd.tgz").unlink()  # already there: nothing is read again
    b.fetch_openseadragon(dest, tarball=tmp_path / "osd.tgz", integrity=integrity(data), version="9.9.9")


def test_a_tarball_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    b = backend()
    (tmp_path / "osd.tgz").write_bytes(tarball(FAKE))
    with pytest.raises(b.FetchError, match="integrity mismatch"):
        b.fetch_openseadragon(tmp_path / "dest", tarball=tmp_path / "osd.tgz")  # the pinned sha512
    assert not (tmp_path / "dest").exists()
    incomplete = tarball({"package/LICENSE.txt": b"x"})
    (tmp_path / "bad.tgz").write_bytes(incomplete)
    with pytest.raises(b.FetchError, match="lacks"):
        b.fetch_openseadragon(tmp_path / "dest", tarball=tmp_path / "bad.tgz", integrity=integrity(incomplete))


def test_a_failed_download_says_how_to_work_offline(tmp_path: Path) -> None:
    b = backend()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connection refused
    with pytest.raises(b.FetchError, match=f"could not download OpenSeadragon.*{b.ENV_TARBALL}="):
        b.fetch_openseadragon(tmp_path / "dest", url=f"http://127.0.0.1:{port}/osd.tgz")


def test_the_installed_openseadragon_is_the_pinned_release() -> None:
    b = backend()
    assert b.TARBALL_URL.startswith("https://registry.npmjs.org/openseadragon/-/openseadragon-")
    assert b.installed(STATIC / "openseadragon"), "OpenSeadragon missing: pip install -e . fetches it"
    assets = load_assets()
    assert assets.openseadragon["version"] == b.VERSION
    assert assets.get("openseadragon/LICENSE.txt") is not None and assets.get("viewer.js") is not None


def test_the_viewer_refuses_to_start_without_its_front_end(tmp_path: Path) -> None:
    (tmp_path / "viewer.html").write_text("<html></html>")
    with pytest.raises(AssetsMissing, match=r"openseadragon\.min\.js.*reinstall"):
        load_assets(tmp_path)
