"""The viewer's answers, independent of HTTP: tiles, descriptions, probe values and vector layers by id.

:class:`Viewer` wraps a :class:`~mrseg.view.catalog.Catalog` and a :class:`~mrseg.view.pool.TileCache`.
Unknown ids raise :class:`NotFound` (the web layer answers 404); tile bytes are cached under their
full key (ids, level, column, row, colormap, threshold) up to the cache's byte budget.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from mrseg.view.catalog import Catalog, Layer, MapSource, SlideSource
from mrseg.view.deepzoom import TileNotFound
from mrseg.view.outlines import Outline, annotation_outlines, map_outlines
from mrseg.view.pool import TileCache
from mrseg.view.render import COLORMAPS, NEAR_ZERO, colormap_stops, jpeg_bytes, overlay_png

log = logging.getLogger(__name__)

#: Longest side of slide thumbnails (the slide list).
THUMBNAIL_PX = 256
#: Longest side of the map level the predicted contours are traced on.
CONTOUR_MAX_SIDE = 4096
#: Vector layers (outline lists) kept at most.
JSON_CACHE_ITEMS = 256
#: Default colormap, threshold and opacity of the overlays.
DEFAULTS: dict[str, Any] = {"cmap": COLORMAPS[0], "threshold": 0.5, "opacity": 0.6}


class NotFound(LookupError):
    """No such slide, prediction, map or tile."""


class Viewer:
    """What the web layer asks for, by id.

    Parameters
    ----------
    catalog
        The slides, predictions and truth served (closed by :meth:`close`).
    cache_bytes
        Byte budget of the tile cache.
    """

    def __init__(self, catalog: Catalog, cache_bytes: int = 256 << 20) -> None:
        self.catalog = catalog
        self.cache = TileCache(cache_bytes)
        self._json: dict[Any, Any] = {}  # vector layers, at most JSON_CACHE_ITEMS
        self._json_lock = threading.Lock()

    def close(self) -> None:
        self.catalog.close()

    # -- lookups ---------------------------------------------------------------------------------
    def slide(self, slide_id: str) -> SlideSource:
        try:
            return self.catalog.slides[slide_id]
        except KeyError:
            raise NotFound(f"no slide {slide_id!r}") from None

    def layer(self, slide_id: str, pred_id: str) -> Layer:
        try:
            return self.slide(slide_id).layers[pred_id]
        except KeyError:
            raise NotFound(f"no prediction {pred_id!r} of slide {slide_id!r}") from None

    def map_source(self, slide_id: str, pred_id: str, key: str) -> MapSource:
        try:
            return self.layer(slide_id, pred_id).maps[key]
        except KeyError:
            raise NotFound(f"no map {key!r} in prediction {pred_id!r} of slide {slide_id!r}") from None

    # -- descriptions ----------------------------------------------------------------------------
    def describe_catalog(self) -> dict[str, Any]:
        """The slide list and the viewer's settings (JSON)."""
        return {
            "slides": [self._slide_summary(s) for s in self.catalog.slides.values()],
            "predictions": self.catalog.predictions,
            "colormaps": {name: colormap_stops(name) for name in COLORMAPS},
            "defaults": {**DEFAULTS, "near_zero": NEAR_ZERO},
        }

    def _slide_summary(self, slide: SlideSource) -> dict[str, Any]:
        w, h = slide.dimensions
        return {
            "id": slide.id,
            "name": slide.path.name,
            "width": w,
            "height": h,
            "mpp": slide.mpp,
            "levels": slide.level_count,
            "backend": slide.backend,
            "predictions": list(slide.layers),
            "truth": slide.truth_path.name if slide.truth_path is not None else None,
            "thumbnail": f"/thumbnail/{slide.id}.jpeg?v={slide.version}",
            "view": f"/view/{slide.id}",
        }

    def describe_slide(self, slide_id: str) -> dict[str, Any]:
        """One slide, its Deep Zoom source and its layers (JSON for the viewer page)."""
        slide = self.slide(slide_id)
        grid = slide.grid
        layers = []
        for pred_id, layer in slide.layers.items():
            maps = [
                {
                    "key": m.key,
                    "name": m.name,
                    "color": m.color,
                    "dzi": f"/overlay/{slide.id}/{pred_id}/{m.key}.dzi?v={m.version}",
                    "contours": f"/api/contours/{slide.id}/{pred_id}/{m.key}",
                }
                for m in layer.maps.values()
            ]
            layers.append({"id": pred_id, "map_mpp": layer.record.map_mpp, "maps": maps})
        ids = list(self.catalog.slides)
        index = ids.index(slide.id)
        return {
            **self._slide_summary(slide),
            "dzi": f"/dzi/{slide.id}.dzi?v={slide.version}",
            "tile_size": grid.tile_px,
            "overlap": grid.overlap_px,
            "layers": layers,
            "truth_url": f"/api/truth/{slide.id}" if slide.truth is not None else None,
            "probe": f"/api/probe/{slide.id}",
            "previous": ids[index - 1] if index > 0 else None,
            "next": ids[index + 1] if index + 1 < len(ids) else None,
        }

    def dzi(self, slide_id: str, image_format: str) -> str:
        return self.slide(slide_id).grid.dzi_xml(image_format)

    # -- tiles -----------------------------------------------------------------------------------
    @staticmethod
    def slide_tile_key(slide_id: str, level: int, col: int, row: int) -> tuple[Any, ...]:
        """The tile cache's key of a slide tile (the web layer looks cache hits up without a thread)."""
        return ("slide", slide_id, level, col, row)

    @staticmethod
    def overlay_tile_key(
        slide_id: str, pred_id: str, key: str, level: int, col: int, row: int, cmap: str, threshold: float
    ) -> tuple[Any, ...]:
        """The tile cache's key of an overlay tile."""
        return ("overlay", slide_id, pred_id, key, level, col, row, cmap, threshold)

    def slide_tile(self, slide_id: str, level: int, col: int, row: int) -> bytes:
        """JPEG of Deep Zoom tile ``(level, col, row)`` of a slide."""
        slide = self.slide(slide_id)
        grid = self._tile_grid(slide, level, col, row)

        def make() -> bytes:
            with slide.pool.borrow() as handle:
                pixels = handle.read_box(grid.box_l0, grid.size_px)
            return jpeg_bytes(pixels)

        return self.cache.get_or_make(self.slide_tile_key(slide_id, level, col, row), make)

    def overlay_tile(
        self, slide_id: str, pred_id: str, key: str, level: int, col: int, row: int, cmap: str, threshold: float
    ) -> bytes:
        """PNG of the overlay of map ``key`` of ``pred_id`` on Deep Zoom tile ``(level, col, row)``."""
        slide = self.slide(slide_id)
        source = self.map_source(slide_id, pred_id, key)
        grid = self._tile_grid(slide, level, col, row)

        def make() -> bytes:
            with source.pool.borrow() as raster:
                values = raster.values(grid)
                encoding = raster.encoding
            return overlay_png(values, encoding, cmap, threshold)

        cache_key = self.overlay_tile_key(slide_id, pred_id, key, level, col, row, cmap, threshold)
        return self.cache.get_or_make(cache_key, make)

    def thumbnail(self, slide_id: str) -> bytes:
        """JPEG of the whole slide, longest side :data:`THUMBNAIL_PX`."""
        slide = self.slide(slide_id)

        def make() -> bytes:
            mpp = max(slide.mpp, slide.mpp * max(slide.dimensions) / THUMBNAIL_PX)
            with slide.pool.borrow() as handle:
                return jpeg_bytes(handle.thumbnail(mpp))

        return self.cache.get_or_make(("thumbnail", slide_id), make)

    @staticmethod
    def _tile_grid(slide: SlideSource, level: int, col: int, row: int) -> Any:
        try:
            return slide.grid.tile_grid(level, col, row)
        except TileNotFound as error:
            raise NotFound(str(error)) from None

    # -- probe and vector layers -----------------------------------------------------------------
    def probe(self, slide_id: str, x_l0: float, y_l0: float) -> dict[str, Any]:
        """Every map's probability at level-0 point ``(x, y)`` of a slide: ``{pred: {key: p or None}}``."""
        slide = self.slide(slide_id)
        values: dict[str, dict[str, float | None]] = {}
        for pred_id, layer in slide.layers.items():
            values[pred_id] = {}
            for key, source in layer.maps.items():
                with source.pool.borrow() as raster:
                    values[pred_id][key] = raster.probability_at(x_l0, y_l0)
        inside = 0 <= x_l0 < slide.dimensions[0] and 0 <= y_l0 < slide.dimensions[1]
        return {"x": x_l0, "y": y_l0, "inside": inside, "um": [x_l0 * slide.mpp, y_l0 * slide.mpp], "values": values}

    def truth_outlines(self, slide_id: str) -> list[Outline]:
        """Ground-truth outlines of a slide (empty when it has no truth)."""
        slide = self.slide(slide_id)
        truth = slide.truth
        if truth is None:
            raise NotFound(f"slide {slide_id!r} has no ground truth")
        return self._cached_json(
            ("truth", slide_id), lambda: annotation_outlines(truth, self.catalog.labels, slide.dimensions)
        )

    def contours(self, slide_id: str, pred_id: str, key: str, threshold: float) -> list[Outline]:
        """The contours of map ``key`` of ``pred_id`` at ``threshold`` (traced on a coarse map level)."""
        source = self.map_source(slide_id, pred_id, key)
        labels = self.layer(slide_id, pred_id).record.labels

        def make() -> list[Outline]:
            with source.pool.borrow() as raster:
                values, grid = raster.overview(CONTOUR_MAX_SIDE)
                probability = raster.encoding.decode(values)
            outlines = map_outlines(probability, grid, threshold, source.label, labels)
            for outline in outlines:
                outline.update(name=source.name, color=source.color)
            return outlines

        return self._cached_json(("contours", slide_id, pred_id, key, threshold), make)

    def _cached_json(self, key: Any, make: Callable[[], list[Outline]]) -> list[Outline]:
        with self._json_lock:
            if key in self._json:
                return self._json[key]  # type: ignore[no-any-return]
        value = make()
        with self._json_lock:
            if len(self._json) >= JSON_CACHE_ITEMS:
                self._json.pop(next(iter(self._json)))
            self._json[key] = value
        return value


__all__ = ["CONTOUR_MAX_SIDE", "DEFAULTS", "THUMBNAIL_PX", "NotFound", "Viewer"]
