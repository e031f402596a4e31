"""The viewer over plain HTTP on 127.0.0.1: DZI XML, tile bytes, probe, vector layers, assets, and 404s
for unknown ids and every traversal attempt (ids are looked up, never joined to a path)."""

from __future__ import annotations

import http.client
import io
import json
import socket
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from mrseg.view.server import ViewServer
from slide_images import coord_image
from view_scenes import SLIDE_H, SLIDE_W, Scene


def get(server: ViewServer, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` of a raw request (the path is sent exactly as given)."""
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def get_json(server: ViewServer, path: str) -> Any:
    status, _, body = get(server, path)
    assert status == 200, body
    return json.loads(body)


def test_binds_to_localhost_on_a_free_port(server: ViewServer) -> None:
    url = urlsplit(server.url)
    assert url.hostname == "127.0.0.1" and url.port and url.port > 0
    # a TCP socket by protocol, so that asyncio turns Nagle off on its connections (no 40-ms stalls)
    assert server.socket.proto == socket.IPPROTO_TCP


def test_dzi_descriptor(server: ViewServer) -> None:
    status, headers, body = get(server, "/dzi/s1.dzi")
    assert status == 200 and headers["content-type"].startswith("application/xml")
    root = ET.fromstring(body)
    assert root.attrib["Format"] == "jpeg" and root.attrib["TileSize"] == "254" and root.attrib["Overlap"] == "1"
    assert root[0].attrib == {"Width": str(SLIDE_W), "Height": str(SLIDE_H)}
    status, _, body = get(server, "/overlay/s1/fine/map.dzi?v=x&cmap=magma&threshold=0.2")
    assert status == 200 and ET.fromstring(body).attrib["Format"] == "png"


@pytest.mark.parametrize(("level", "col", "row"), [(10, 0, 0), (10, 2, 1), (10, 3, 2), (9, 1, 1)])
def test_slide_tiles_are_the_slide_pixels(server: ViewServer, level: int, col: int, row: int) -> None:
    status, headers, body = get(server, f"/dzi/s1_files/{level}/{col}_{row}.jpeg")
    assert status == 200 and headers["content-type"] == "image/jpeg" and "max-age" in headers["cache-control"]
    tile = np.asarray(Image.open(io.BytesIO(body)).convert("RGB")).astype(np.int16)
    grid = server.viewer.catalog.slides["s1"].grid.tile_grid(level, col, row)
    x0, y0, x1, y1 = (int(v) for v in grid.box_l0)
    expected = coord_image(SLIDE_W, SLIDE_H)[y0:y1, x0:x1]
    if level == 9:  # 2x2 means of the coordinate image: level 1 of the pyramid
        e = expected.astype(np.float32)
        expected = (e[0::2, 0::2] + e[1::2, 0::2] + e[0::2, 1::2] + e[1::2, 1::2]) / 4
    assert tile.shape == (*grid.shape, 3)
    assert np.abs(tile - expected).mean() < 6  # JPEG (quality 90) of exactly these pixels


def test_overlay_tiles_are_pngs_with_alpha(server: ViewServer, scene: Scene) -> None:
    status, headers, body = get(server, "/overlay/s1/coarse/map_files/10/0_0.png?v=1&cmap=viridis&threshold=0.3")
    assert status == 200 and headers["content-type"] == "image/png"
    rgba = np.asarray(Image.open(io.BytesIO(body)))
    assert rgba.shape == (255, 255, 4) and set(np.unique(rgba[..., 3])) == {0, 255}
    assert get(server, "/overlay/s1/coarse/map_files/10/0_0.png?cmap=jet")[0] == 400  # not perceptually uniform
    assert get(server, "/overlay/s1/coarse/map_files/10/0_0.png?threshold=2")[0] == 400


def test_probe_gives_every_model_at_a_level0_point(server: ViewServer, scene: Scene) -> None:
    data = get_json(server, "/api/probe/s1?x=130.5&y=70")
    assert data["inside"] and data["um"] == [65.25, 35.0]
    for name, (values, map_mpp) in scene.maps.items():
        d = map_mpp / 0.5
        expected = values[int(70 // d), int(130.5 // d)] / 255
        assert data["values"][name]["map"] == pytest.approx(expected, abs=1e-6)
    outside = get_json(server, "/api/probe/s1?x=-5&y=10")
    assert not outside["inside"] and outside["values"]["fine"]["map"] is None
    assert get(server, "/api/probe/s1?x=abc&y=1")[0] == 400


def test_descriptions_list_slides_layers_and_urls(server: ViewServer) -> None:
    catalog = get_json(server, "/api/catalog")
    assert [s["id"] for s in catalog["slides"]] == ["s1"] and catalog["predictions"] == ["coarse", "fine"]
    assert set(catalog["colormaps"]) >= {"viridis", "magma"} and catalog["openseadragon"]
    slide = get_json(server, "/api/slides/s1")
    assert [layer["id"] for layer in slide["layers"]] == ["coarse", "fine"]
    assert slide["layers"][1]["map_mpp"] == 1.5 and slide["truth"] == "s1.xml"
    for url in [slide["dzi"], slide["thumbnail"], slide["truth_url"], slide["layers"][0]["maps"][0]["dzi"]]:
        assert get(server, url)[0] == 200, url


def test_truth_outlines_and_predicted_contours_are_level0_rings(server: ViewServer) -> None:
    truth = get_json(server, "/api/truth/s1")["outlines"]
    assert [(o["label"], o["name"]) for o in truth] == [(1, "tumor")]
    ring = np.asarray(truth[0]["rings"][0]).reshape(-1, 2)
    assert ring.min(axis=0).tolist() == [100, 100] and ring.max(axis=0).tolist() == [300, 250]
    contours = get_json(server, "/api/contours/s1/coarse/map?threshold=0.5")["outlines"]
    rings = [np.asarray(r).reshape(-1, 2) for r in contours[0]["rings"]]
    assert rings and all(r[:, 0].min() >= 0 and r[:, 0].max() <= SLIDE_W for r in rings)


def test_pages_and_assets(server: ViewServer) -> None:
    status, headers, _ = get(server, "/")
    assert status == 307 and headers["location"] == "/view/s1"  # one slide: straight to its viewer
    for path in ["/view/s1", "/static/viewer.js", "/static/openseadragon/openseadragon.min.js", "/static/index.html"]:
        assert get(server, path)[0] == 200, path
    assert get(server, "/static/openseadragon/LICENSE.txt")[0] == 200


@pytest.mark.parametrize(
    "path",
    [
        "/dzi/nope.dzi",
        "/dzi/s1_files/10/9_9.jpeg",
        "/dzi/s1_files/11/0_0.jpeg",
        "/overlay/s1/nope/map.dzi",
        "/overlay/s1/fine/class7_files/10/0_0.png",
        "/overlay/nope/fine/map_files/10/0_0.png",
        "/api/slides/nope",
        "/api/probe/nope?x=1&y=1",
        "/view/nope",
        "/static/nope.js",
        "/api/truth/nope",
    ],
)
def test_unknown_ids_are_404(server: ViewServer, path: str) -> None:
    assert get(server, path)[0] == 404


@pytest.mark.parametrize(
    "path",
    [
        "/static/../../../../etc/passwd",
        "/static/..%2f..%2f..%2fetc%2fpasswd",
        "/static/%2e%2e/%2e%2e/view.py",
        "/static/openseadragon/../../app.py",
        "/static//etc/passwd",
        "/dzi/..%2f..%2fslides%2fs1.dzi",
        "/dzi/../../etc/passwd.dzi",
        "/dzi/%2e%2e_files/10/0_0.jpeg",
        "/overlay/s1/..%2fpreds%2ffine/map.dzi",
        "/api/slides/..%2f..%2fetc%2fpasswd",
        "/thumbnail/..%2fs1.jpeg",
    ],
)
def test_traversal_attempts_are_404(server: ViewServer, path: str) -> None:
    status, _, body = get(server, path)
    assert status == 404, (path, body[:80])


def test_read_only(server: ViewServer) -> None:
    for method in ("POST", "PUT", "DELETE"):
        assert get(server, "/api/catalog", method)[0] == 405
    assert get(server, "/api/catalog", "HEAD")[0] == 200


def test_the_tile_cache_is_bounded(server: ViewServer) -> None:
    cache = server.viewer.cache
    for col in range(4):
        for row in range(3):
            get(server, f"/dzi/s1_files/10/{col}_{row}.jpeg")
            get(server, f"/overlay/s1/fine/map_files/10/{col}_{row}.png?cmap=magma&threshold=0.{col}{row}")
    assert 0 < cache.size_bytes <= cache.max_bytes and cache.hits > 0
