"""Fixtures of the CLI tests: a small slide, tiny checkpoints (binary and three classes), ground truth."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from mrseg.core.input_spec import InputSpec
from mrseg.core.label_spec import LabelSpec
from mrseg.models import create_model
from mrseg.models.checkpoint import make_checkpoint, save_checkpoint
from mrseg.wsi.tiff import write_pyramidal_tiff

THREE_CLASSES = LabelSpec(
    classes=("background", "tumor", "lymphoid"),
    label_map={"tumor": 1, "lymphoid": 2},
    colors=((0, 0, 0), (200, 0, 0), (0, 90, 220)),
)

#: The tissue block of :func:`slide` and the truth rectangles (level-0 px ``x0, y0, x1, y1``).
TISSUE_L0 = (60, 50, 260, 200)
TRUTH_L0 = {"tumor": (80, 60, 160, 120), "lymphoid": (170, 120, 250, 190)}


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a busy small machine: avoid OpenMP oversubscription
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def slide(tmp_path: Path) -> Path:
    """``s1.tif``: 320x256 px at 1 µm/px, white glass with a pink 'tissue' block."""
    rng = np.random.default_rng(0)
    image = np.full((256, 320, 3), 255, np.uint8)
    x0, y0, x1, y1 = TISSUE_L0
    t = rng.integers(0, 60, (y1 - y0, x1 - x0, 1))
    image[y0:y1, x0:x1] = np.concatenate([210 - t, 110 - t, 190 - t], axis=2).astype(np.uint8)
    return write_pyramidal_tiff(tmp_path / "s1.tif", image, 1.0, compression="zlib", min_size=64)


def _checkpoint(path: Path, labels: LabelSpec | None) -> Path:
    torch.manual_seed(0)
    outputs = labels.num_outputs if labels is not None else 1
    model = create_model("unet", mpps=[1.0], width=4, depth=2, num_classes=outputs)
    return save_checkpoint(path, make_checkpoint(model, InputSpec((1.0,), 32), labels=labels))


@pytest.fixture()
def binary_checkpoint(tmp_path: Path) -> Path:
    """A width-4, depth-2 binary U-Net at 1 µm/px (32-px patches)."""
    return _checkpoint(tmp_path / "binary.pt", None)


@pytest.fixture()
def three_class_checkpoint(tmp_path: Path) -> Path:
    """The same U-Net with three classes (softmax): background, tumor, lymphoid."""
    return _checkpoint(tmp_path / "three.pt", THREE_CLASSES)


@pytest.fixture()
def truth(tmp_path: Path) -> Path:
    """A truth folder with ``s1.geojson``: one rectangle of each foreground class of :data:`THREE_CLASSES`."""
    features = []
    for name, (x0, y0, x1, y1) in TRUTH_L0.items():
        ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"classification": {"name": name}},
            }
        )
    folder = tmp_path / "truth"
    folder.mkdir()
    (folder / "s1.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return folder
