"""Fixtures of the inference tests: small pyramidal slides, tiny checkpoints, one torch thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from mrseg.core.input_spec import InputSpec
from mrseg.core.label_spec import LabelSpec
from mrseg.models import create_model
from mrseg.models.checkpoint import Checkpoint, make_checkpoint, save_checkpoint
from mrseg.wsi.tiff import write_pyramidal_tiff

_THREE_CLASSES = LabelSpec(
    classes=("background", "tumor", "lymphoid"),
    label_map={"tumor": 1, "lymphoid": 2},
    colors=((0, 0, 0), (200, 0, 0), (0, 90, 220)),
)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a busy 2-core machine: avoid OpenMP oversubscription
    yield
    torch.set_num_threads(threads)


def _write_slide(path: Path, *, mpp: float | None = 1.0, tissue: bool = True, seed: int = 0) -> Path:
    """320x256 px slide: white glass with a 200x150 px pink 'tissue' block (large enough for tissue detection)."""
    rng = np.random.default_rng(seed)
    image = np.full((256, 320, 3), 255, np.uint8)
    if tissue:
        t = rng.integers(0, 60, (150, 200, 1))
        image[50:200, 60:260] = np.concatenate([210 - t, 110 - t, 190 - t], axis=2).astype(np.uint8)
    if mpp is None:
        tifffile.imwrite(path, image, tile=(64, 64), photometric="rgb")
        return path
    return write_pyramidal_tiff(path, image, mpp, compression="zlib", min_size=64)


@pytest.fixture()
def slide_file(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``slide_file(name="s.tif", mpp=1.0, tissue=True, seed=0)`` writes a slide in ``tmp_path``."""

    def make(name: str = "s.tif", **kw: object) -> Path:
        return _write_slide(tmp_path / name, **kw)  # type: ignore[arg-type]

    return make


def _tiny_checkpoint(
    name: str = "mrn_bilinear",
    mpps: tuple[float, ...] = (1.0, 2.0, 4.0),
    labels: LabelSpec | None = None,
    seed: int = 0,
) -> Checkpoint:
    """A width-4, depth-2 network of ``name`` with 32-px patches (binary unless ``labels`` says otherwise)."""
    torch.manual_seed(seed)
    outputs = labels.num_outputs if labels is not None else 1
    model = create_model(name, mpps=list(mpps), width=4, depth=2, num_classes=outputs)
    return make_checkpoint(model, InputSpec(mpps, 32), labels=labels)


@pytest.fixture()
def make_ckpt() -> Callable[..., Checkpoint]:
    """Factory: ``make_ckpt(name="mrn_bilinear", mpps=(1, 2, 4), labels=None, seed=0)``, a tiny checkpoint."""
    return _tiny_checkpoint


@pytest.fixture()
def three_classes() -> LabelSpec:
    """Background, tumor (red) and lymphoid (blue)."""
    return _THREE_CLASSES


@pytest.fixture()
def checkpoint_file(tmp_path: Path) -> Path:
    """A saved binary MRN checkpoint (mpps 1, 2, 4)."""
    return save_checkpoint(tmp_path / "model.pt", _tiny_checkpoint())


@pytest.fixture()
def three_class_file(tmp_path: Path) -> Path:
    """A saved 3-class (softmax) U-Net checkpoint at 1 um/px."""
    return save_checkpoint(tmp_path / "three.pt", _tiny_checkpoint("unet", (1.0,), _THREE_CLASSES))
