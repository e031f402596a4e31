"""Scenes of the viewer tests (not collected): slides whose pixels encode their coordinates, and
predictions whose map values encode theirs, with records written as ``mrseg predict`` writes them."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from mrseg.core.label_spec import LabelSpec
from mrseg.view.catalog import Catalog, build_catalog
from mrseg.wsi.tiff import write_pyramidal_tiff
from slide_images import coord_image

SLIDE_W, SLIDE_H, SLIDE_MPP = 1000, 600, 0.5


def map_values(shape_hw: tuple[int, int]) -> np.ndarray:
    """``uint8 (H, W)`` whose pixel ``(u, v)`` is ``16 + (3 u + 7 v) % 240``: a shift by one pixel changes it."""
    v, u = np.mgrid[0 : shape_hw[0], 0 : shape_hw[1]]
    return (16 + (3 * u + 7 * v) % 240).astype(np.uint8)


def write_slide(path: Path, width: int = SLIDE_W, height: int = SLIDE_H, mpp: float = SLIDE_MPP) -> Path:
    """A pyramidal (zlib, lossless) slide whose pixel (x, y) encodes x and y (``slide_images.coord_image``)."""
    return write_pyramidal_tiff(path, coord_image(width, height), mpp, compression="zlib", min_size=64)


def write_prediction(
    folder: Path,
    slide: Path,
    values: np.ndarray,
    map_mpp: float,
    *,
    slide_dims: tuple[int, int] = (SLIDE_W, SLIDE_H),
    slide_mpp: float = SLIDE_MPP,
    labels: LabelSpec | None = None,
    extra: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write ``<stem>.tif`` (the map ``values``, uint8 or float16) and ``<stem>.json`` as ``mrseg predict`` does."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = slide.stem
    outputs = {"map": f"{stem}.tif", "record": f"{stem}.json"}
    write_pyramidal_tiff(folder / outputs["map"], values, map_mpp, compression="zlib", min_size=16)
    for key, array in (extra or {}).items():
        outputs[key] = f"{stem}_{key}.tif"
        write_pyramidal_tiff(folder / outputs[key], array, map_mpp, compression="zlib", min_size=16)
    record: dict[str, Any] = {
        "slide": {"path": str(slide), "dimensions": list(slide_dims), "mpp": slide_mpp},
        "checkpoint": {"labels": (labels or LabelSpec()).to_dict()},
        "map": {"mpp": map_mpp, "shape": list(values.shape), "dtype": str(values.dtype)},
        "outputs": outputs,
    }
    (folder / outputs["record"]).write_text(json.dumps(record))
    return folder / outputs["record"]


@dataclass
class Scene:
    """A slide with two predictions (maps at 4 and 1.5 um/px over a 0.5 um/px slide) and ASAP truth."""

    root: Path
    slide: Path
    preds: dict[str, Path]
    truth: Path
    maps: dict[str, tuple[np.ndarray, float]]

    def catalog(self) -> Catalog:
        return build_catalog(self.slide, self.preds, self.truth)


def truth_xml(path: Path) -> Path:
    """ASAP XML with one tumour rectangle (level-0 x 100..300, y 100..250)."""
    coords = [(100, 100), (300, 100), (300, 250), (100, 250)]
    xml = "".join(f'<Coordinate Order="{i}" X="{x}" Y="{y}"/>' for i, (x, y) in enumerate(coords))
    path.write_text(
        '<?xml version="1.0"?><ASAP_Annotations><Annotations><Annotation Name="t" Type="Polygon" '
        f'PartOfGroup="_0"><Coordinates>{xml}</Coordinates></Annotation></Annotations></ASAP_Annotations>'
    )
    return path


def make_scene(root: Path) -> Scene:
    (root / "slides").mkdir(parents=True)
    slide = write_slide(root / "slides" / "s1.tif")
    maps = {}
    preds = {}
    for name, map_mpp in (("coarse", 4.0), ("fine", 1.5)):
        d = map_mpp / SLIDE_MPP
        shape = (round(SLIDE_H / d), round(SLIDE_W / d))
        values = map_values(shape)
        write_prediction(root / "preds" / name, slide, values, map_mpp)
        maps[name] = (values, map_mpp)
        preds[name] = root / "preds" / name
    return Scene(root, slide, preds, truth_xml(root / "s1.xml"), maps)


ROOT = Path(__file__).resolve().parents[1]


def build_backend() -> ModuleType:
    """The in-tree build backend (``build_backend/mrseg_build.py``), which fetches OpenSeadragon."""
    spec = importlib.util.spec_from_file_location("mrseg_build", ROOT / "build_backend" / "mrseg_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
