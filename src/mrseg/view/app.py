"""The viewer's web layer (Starlette): read-only GET routes over a :class:`~mrseg.view.service.Viewer`.

==========================================================  ==================================================
route                                                       answer
==========================================================  ==================================================
``/``                                                       slide list (``index.html``)
``/view/{slide}``                                           viewer page (``viewer.html``)
``/static/{name}``                                          front-end files (:mod:`mrseg.view.assets`)
``/api/catalog``, ``/api/slides/{slide}``                   JSON descriptions
``/api/probe/{slide}?x=&y=``                                every map's probability at level-0 ``(x, y)``
``/api/truth/{slide}``                                      ground-truth outlines (level-0 rings)
``/api/contours/{slide}/{pred}/{map}?threshold=``           predicted contours
``/thumbnail/{slide}.jpeg``                                 thumbnail
``/dzi/{slide}.dzi``, ``/dzi/{slide}_files/L/C_R.jpeg``     Deep Zoom slide
``/overlay/{slide}/{pred}/{map}.dzi``, ``..._files/L/C_R.png?cmap=&threshold=``  Deep Zoom overlay
==========================================================  ==================================================

Ids are looked up in the catalog (unknown: 404); no part of a URL is ever joined to a path. Tiles
are sent with a long private cache lifetime: their URLs carry a version token of the file (``v=``).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from mrseg.view.assets import Assets
from mrseg.view.render import COLORMAPS
from mrseg.view.service import DEFAULTS, NotFound, Viewer

log = logging.getLogger(__name__)

TILE_CACHE_CONTROL = "private, max-age=86400"
NO_CACHE = "no-cache"


def _float(
    request: Request, name: str, default: float | None = None, lo: float = -math.inf, hi: float = math.inf
) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        if default is None:
            raise HTTPException(400, f"missing query parameter {name}")
        return default
    try:
        value = float(raw)
    except ValueError:
        raise HTTPException(400, f"{name} must be a number, got {raw!r}") from None
    if not (math.isfinite(value) and lo <= value <= hi):
        raise HTTPException(400, f"{name} must be in [{lo}, {hi}], got {raw!r}")
    return value


def _cmap(request: Request) -> str:
    cmap = request.query_params.get("cmap", str(DEFAULTS["cmap"]))
    if cmap not in COLORMAPS:
        raise HTTPException(400, f"cmap must be one of {', '.join(COLORMAPS)}")
    return cmap


def create_app(viewer: Viewer, assets: Assets) -> Starlette:
    """The Starlette application of ``viewer`` and the front-end ``assets`` (GET and HEAD only)."""

    def page(name: str) -> Response:
        data, media = assets.files[name]
        return Response(data, media_type=media, headers={"Cache-Control": NO_CACHE})

    def index(request: Request) -> Response:
        if len(viewer.catalog.slides) == 1:
            return RedirectResponse(f"/view/{next(iter(viewer.catalog.slides))}", status_code=307)
        return page("index.html")

    def view(request: Request) -> Response:
        viewer.slide(request.path_params["slide"])
        return page("viewer.html")

    def static(request: Request) -> Response:
        found = assets.get(request.path_params["name"])
        if found is None:
            raise HTTPException(404, "no such file")
        return Response(found[0], media_type=found[1], headers={"Cache-Control": "private, max-age=3600"})

    def catalog(request: Request) -> Response:
        return _json({**viewer.describe_catalog(), "openseadragon": assets.openseadragon.get("version")})

    def slide(request: Request) -> Response:
        return _json(viewer.describe_slide(request.path_params["slide"]))

    def probe(request: Request) -> Response:
        x, y = _float(request, "x"), _float(request, "y")
        return _json(viewer.probe(request.path_params["slide"], x, y))

    def truth(request: Request) -> Response:
        return _json({"outlines": viewer.truth_outlines(request.path_params["slide"])})

    def contours(request: Request) -> Response:
        p = request.path_params
        t = _float(request, "threshold", float(DEFAULTS["threshold"]), 0.0, 1.0)
        return _json({"outlines": viewer.contours(p["slide"], p["pred"], p["map"], round(t, 3))})

    def thumbnail(request: Request) -> Response:
        return _tile(viewer.thumbnail(request.path_params["slide"]), "image/jpeg")

    def slide_dzi(request: Request) -> Response:
        xml = viewer.dzi(request.path_params["slide"], "jpeg")
        return Response(xml, media_type="application/xml", headers={"Cache-Control": NO_CACHE})

    async def slide_tile(request: Request) -> Response:
        args = tuple(request.path_params[k] for k in ("slide", "level", "col", "row"))
        data = viewer.cache.get(viewer.slide_tile_key(*args))  # a hit needs no worker thread
        if data is None:
            data = await run_in_threadpool(viewer.slide_tile, *args)
        return _tile(data, "image/jpeg")

    def overlay_dzi(request: Request) -> Response:
        p = request.path_params
        viewer.map_source(p["slide"], p["pred"], p["map"])
        xml = viewer.dzi(p["slide"], "png")
        return Response(xml, media_type="application/xml", headers={"Cache-Control": NO_CACHE})

    async def overlay_tile(request: Request) -> Response:
        p = request.path_params
        t = round(_float(request, "threshold", float(DEFAULTS["threshold"]), 0.0, 1.0), 3)
        args = (p["slide"], p["pred"], p["map"], p["level"], p["col"], p["row"], _cmap(request), t)
        data = viewer.cache.get(viewer.overlay_tile_key(*args))
        if data is None:
            data = await run_in_threadpool(viewer.overlay_tile, *args)
        return _tile(data, "image/png")

    routes = [
        Route("/", index),
        Route("/view/{slide}", view),
        Route("/static/{name:path}", static),
        Route("/api/catalog", catalog),
        Route("/api/slides/{slide}", slide),
        Route("/api/probe/{slide}", probe),
        Route("/api/truth/{slide}", truth),
        Route("/api/contours/{slide}/{pred}/{map}", contours),
        Route("/thumbnail/{slide}.jpeg", thumbnail),
        Route("/dzi/{slide}.dzi", slide_dzi),
        Route("/dzi/{slide}_files/{level:int}/{col:int}_{row:int}.jpeg", slide_tile),
        Route("/overlay/{slide}/{pred}/{map}.dzi", overlay_dzi),
        Route("/overlay/{slide}/{pred}/{map}_files/{level:int}/{col:int}_{row:int}.png", overlay_tile),
    ]
    return Starlette(routes=[Route(r.path, _guarded(r.endpoint), methods=["GET"]) for r in routes])


def _guarded(endpoint: Callable[[Request], Any]) -> Callable[[Request], Awaitable[Response]]:
    """``endpoint`` with :class:`NotFound` answered as 404; plain functions run in a worker thread (they read files)."""

    async def handle(request: Request) -> Response:
        try:
            if inspect.iscoroutinefunction(endpoint):
                return await endpoint(request)  # type: ignore[no-any-return]
            return await run_in_threadpool(endpoint, request)  # type: ignore[no-any-return]
        except NotFound as error:
            raise HTTPException(404, str(error)) from None

    handle.__name__ = endpoint.__name__
    return handle


def _json(data: Any) -> Response:
    return JSONResponse(data, headers={"Cache-Control": NO_CACHE})


def _tile(data: bytes, media: str) -> Response:
    return Response(data, media_type=media, headers={"Cache-Control": TILE_CACHE_CONTROL})


__all__ = ["create_app"]
