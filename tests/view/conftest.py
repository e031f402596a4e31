"""Fixtures of the viewer tests: OpenSeadragon in place, a scene (:mod:`view_scenes`) and a viewer serving it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mrseg.view.server import ViewServer
from view_scenes import Scene, build_backend, make_scene


@pytest.fixture(scope="session", autouse=True)
def openseadragon() -> None:
    """What ``pip install`` does: fetch the pinned OpenSeadragon into the package when it is not there yet
    (a source tree used through ``PYTHONPATH``); nothing when it is."""
    build_backend().fetch_openseadragon()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    return make_scene(tmp_path_factory.mktemp("scene"))


@pytest.fixture(scope="module")
def server(scene: Scene) -> Iterator[ViewServer]:
    """A viewer of :func:`scene` on a free port of 127.0.0.1, in a thread."""
    srv = ViewServer(scene.catalog(), port=0, cache_mb=8)
    thread = srv.serve_in_thread()
    yield srv
    srv.stop()
    thread.join(10)
