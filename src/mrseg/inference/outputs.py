"""Per-slide outputs of ``mrseg predict``: probability TIFF, overlay PNG, GeoJSON polygons, JSON record.

All writers read the on-disk map (:class:`mrseg.inference.merger.ProbabilityMap`) in strips or by sampling,
so memory stays bounded. Every file is written under a temporary name and renamed when complete.

- ``<stem>.tif``: pyramidal tiled TIFF (zlib), ``uint8`` probability x 255 (OpenSlide, QuPath and
  tiffslide open it; the mpp is stored in the resolution tags) or ``float16`` probabilities (for
  analysis with tifffile; viewers based on OpenSlide cannot decode float samples).
- ``<stem>_overlay.png``: the probability as a heatmap over the slide thumbnail.
- ``<stem>.geojson``: QuPath-importable FeatureCollection of Polygon annotations (level-0 pixels)
  around regions with probability >= threshold.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from mrseg.core.atomic import atomic_path, atomic_write_text
from mrseg.core.encoding import ProbabilityEncoding
from mrseg.inference.merger import ProbabilityMap
from mrseg.wsi.geometry import ReadGrid, sample_nearest
from mrseg.wsi.tiff import write_pyramidal_tiff

log = logging.getLogger(__name__)

#: Longest side of the overlay PNG in pixels.
OVERLAY_MAX_SIDE = 2048
#: Longest side of the mask the GeoJSON polygons are traced on.
GEOJSON_MAX_SIDE = 8192


class _Summed:
    """Array-like ``(H, W)`` view of the clipped sum of several map channels (the foreground)."""

    def __init__(self, pmap: ProbabilityMap) -> None:
        self._pmap = pmap
        self.shape = pmap.shape
        self.dtype = pmap.dtype
        self.ndim = 2

    def __getitem__(self, key: Any) -> np.ndarray:
        total = sum(self._pmap.to_probability(np.asarray(c[key])) for c in self._pmap.channels)
        return self._pmap.encoding.encode(np.asarray(total, dtype=np.float32))


def foreground(pmap: ProbabilityMap) -> Any:
    """Array-like ``(H, W)`` foreground probability: channel 0, or the sum of all channels when C > 1."""
    return pmap.channels[0] if len(pmap.channels) == 1 else _Summed(pmap)


def write_probability_tiff(path: str | os.PathLike[str], level0: Any, mpp: float) -> Path:
    """Write one probability channel (``uint8`` or ``float16`` ``(H, W)``) as a pyramidal TIFF at ``mpp``."""
    return write_pyramidal_tiff(
        path,
        level0,
        mpp,
        tile=256,
        compression="zlib",
        downsample="mean",
        description=ProbabilityEncoding.of(level0.dtype).description,
    )


def _fit(shape_hw: tuple[int, int], max_side: int) -> tuple[int, int]:
    h, w = shape_hw
    f = min(1.0, max_side / max(h, w))
    return max(1, round(h * f)), max(1, round(w * f))


def write_overlay(
    path: str | os.PathLike[str],
    thumbnail: np.ndarray,
    prob: np.ndarray,
    *,
    alpha: float = 0.6,
    cmap: str = "jet",
) -> Path:
    """Blend ``prob`` (float ``(h, w)`` in [0, 1]) as a heatmap over ``thumbnail`` (uint8 ``(h', w', 3)``); write a PNG.

    The probability is resampled to the thumbnail's size; opacity grows with probability, so
    background stays visible.
    """
    from matplotlib import colormaps
    from PIL import Image

    th, tw = thumbnail.shape[:2]
    if prob.shape != (th, tw):
        prob = np.asarray(
            Image.fromarray(prob.astype(np.float32), mode="F").resize((tw, th), Image.Resampling.BILINEAR)
        )
    level = np.rint(np.clip(prob, 0.0, 1.0) * 255).astype(np.uint8)  # 256 colour levels: a lookup table
    lut = colormaps[cmap](np.arange(256), bytes=True)[:, :3].astype(np.float32)
    a = (np.arange(256, dtype=np.float32) / 255 * alpha)[level][..., None]
    blended = thumbnail[..., :3] * (1 - a) + lut[level] * a
    image = Image.fromarray(np.rint(blended).astype(np.uint8))
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path


def mask_polygons(mask: np.ndarray, pixel_l0: float, min_area_px: float = 4.0) -> list[Any]:
    """Trace the regions of a bool ``(h, w)`` mask as shapely Polygons in level-0 pixels.

    Mask pixel ``(r, c)`` covers level-0 ``[c*s, (c+1)*s) x [r*s, (r+1)*s)`` with ``s = pixel_l0``.
    Each connected region (8-connectivity) becomes a polygon with its holes; regions smaller than
    ``min_area_px`` mask pixels are dropped.
    """
    from shapely.geometry import Polygon
    from shapely.ops import unary_union
    from skimage.measure import find_contours, label, regionprops

    polygons: list[Any] = []
    labels = label(mask, connectivity=2)
    for region in regionprops(labels):
        if region.area < min_area_px:
            continue
        r0, c0, _, _ = region.bbox
        crop = np.pad(region.image, 1).astype(np.float32)
        rings = []
        for contour in find_contours(crop, 0.5):
            if len(contour) < 4:
                continue
            # contour (row, col) in padded-crop pixel-centre units -> level-0 (x, y)
            xy = np.stack([contour[:, 1] - 1 + c0 + 0.5, contour[:, 0] - 1 + r0 + 0.5], axis=1) * pixel_l0
            ring = Polygon(xy)
            if ring.area > 0:
                rings.append(ring)
        if not rings:
            continue
        rings.sort(key=lambda p: p.area, reverse=True)
        outer = rings[0]
        for hole in rings[1:]:
            outer = outer.difference(hole)
        geom = unary_union([outer]).buffer(0)
        polygons.extend(getattr(geom, "geoms", [geom]))
    return [p for p in polygons if not p.is_empty and p.area > 0]


def geojson_features(
    polygons: list[Any], *, name: str = "Tumor", color: tuple[int, int, int] = (200, 0, 0), simplify: float = 0.0
) -> dict[str, Any]:
    """A QuPath-importable GeoJSON FeatureCollection of annotation Polygons (level-0 coordinates)."""
    from shapely.geometry import mapping

    features = []
    for poly in polygons:
        geom = poly.simplify(simplify, preserve_topology=True) if simplify > 0 else poly
        if geom.is_empty:
            continue
        features.append(
            {
                "type": "Feature",
                "geometry": mapping(geom),
                "properties": {
                    "objectType": "annotation",
                    "classification": {"name": name, "color": list(color)},
                },
            }
        )
    return {"type": "FeatureCollection", "features": json.loads(json.dumps(features))}


def write_geojson(
    path: str | os.PathLike[str],
    level0: Any,
    map_mpp: float,
    slide_mpp: float,
    threshold: float,
    to_probability: Any,
    *,
    max_side: int = GEOJSON_MAX_SIDE,
) -> tuple[Path, int]:
    """Trace the map above ``threshold`` (sampled to at most ``max_side`` pixels) and write GeoJSON.

    Returns the path and the number of polygons.
    """
    map_grid = ReadGrid.of_map(level0.shape[:2], map_mpp / slide_mpp)
    h, w = _fit(map_grid.shape, max_side)
    mask_grid = ReadGrid(map_grid.box_l0, (w, h))
    prob = to_probability(sample_nearest(level0, map_grid, mask_grid))
    pixel_l0 = mask_grid.scale[0]  # level-0 pixels per mask pixel
    polygons = mask_polygons(prob >= threshold, pixel_l0)
    collection = geojson_features(polygons, simplify=pixel_l0 * 0.5)
    atomic_write_text(path, json.dumps(collection))
    return Path(path), len(collection["features"])


def overlay_from_map(
    path: str | os.PathLike[str], thumbnail: np.ndarray, pmap: ProbabilityMap, slide_dimensions: Any, slide_mpp: float
) -> Path:
    """Write the overlay PNG of the foreground probability over ``thumbnail`` (the whole slide)."""
    w0, h0 = slide_dimensions
    thumb_grid = ReadGrid((0.0, 0.0, float(w0), float(h0)), (thumbnail.shape[1], thumbnail.shape[0]))
    fg = foreground(pmap)
    prob = pmap.to_probability(sample_nearest(fg, ReadGrid.of_map(pmap.shape, pmap.mpp / slide_mpp), thumb_grid))
    return write_overlay(path, thumbnail, prob)


def thumbnail_mpp(slide_dimensions: tuple[int, int], slide_mpp: float, max_side: int = OVERLAY_MAX_SIDE) -> float:
    """The mpp at which the slide's longest side is ``max_side`` pixels (never finer than level 0)."""
    return max(slide_mpp, slide_mpp * max(slide_dimensions) / max_side)


def output_names(stem: str, channels: int = 1, *, geojson: bool = False) -> dict[str, str]:
    """File names of one slide's outputs: ``map``, ``overlay``, ``record`` and optional ``geojson`` / ``class<k>``."""
    names = {"map": f"{stem}.tif", "overlay": f"{stem}_overlay.png", "record": f"{stem}.json"}
    if geojson:
        names["geojson"] = f"{stem}.geojson"
    if channels > 1:
        names.update({f"class{k}": f"{stem}_class{k}.tif" for k in range(1, channels + 1)})
    return names


def read_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The JSON record of a finished slide, or None when absent or unreadable."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_done(out_dir: str | os.PathLike[str], stem: str, checkpoint_sha256: str, settings: dict[str, Any]) -> bool:
    """True when ``<stem>.json`` records this checkpoint and these settings and all its outputs exist."""
    out_dir = Path(out_dir)
    record = read_record(out_dir / f"{stem}.json")
    if record is None:
        return False
    if record.get("checkpoint", {}).get("sha256") != checkpoint_sha256:
        return False
    if record.get("settings") != json.loads(json.dumps(settings)):
        return False
    outputs = record.get("outputs", {})
    return bool(outputs) and all((out_dir / name).is_file() for name in outputs.values())
