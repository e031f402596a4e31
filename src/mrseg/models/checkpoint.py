"""Checkpoints: one self-describing file per model state.

A checkpoint is a plain dictionary of tensors and Python primitives, saved atomically and loaded
with ``torch.load(..., weights_only=True)`` (no pickled code is ever executed). It carries every
shape-defining hyper-parameter, so ``predict`` and ``export`` need nothing but the file
(layout version 2; version-1 files are still read):

``format``, ``version``, ``mrseg_version``
    ``"mrseg-checkpoint"``, the layout version, the writer's mrseg version.
``model``
    ``{"name": registry name, "kwargs": create_model keyword arguments other than mpps}``.
``input``
    :class:`mrseg.core.input_spec.InputSpec` (mpps, size_px, mean, std): the one record of the mpps.
``labels``
    :class:`mrseg.core.label_spec.LabelSpec` (classes, label map, colours, activation).
``tissue``
    :class:`mrseg.core.tissue_spec.TissueSettings` used in training (``predict`` reuses them), or ``None``.
``state_dict``
    The model weights.
``config``
    The resolved training configuration (dict) or ``None``.
``epoch``, ``best_val_loss``, ``val_loss``
    Training progress (``epoch`` counts completed epochs).
``train_state``
    Optional optimiser / scaler / scheduler / RNG states for exact resumption.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mrseg import __version__
from mrseg.core.atomic import atomic_path
from mrseg.core.errors import CheckpointError, ConfigError, ModelConfigError
from mrseg.core.input_spec import InputSpec
from mrseg.core.label_spec import LabelSpec
from mrseg.core.tissue_spec import TissueSettings
from mrseg.models.registry import create_model

FORMAT = "mrseg-checkpoint"
VERSION = 2
#: Layout versions :func:`load_checkpoint` reads.
READABLE_VERSIONS = (1, 2)


@dataclass
class Checkpoint:
    """A loaded checkpoint (see the module docstring for the fields)."""

    model_name: str
    model_kwargs: dict[str, Any]
    input_spec: InputSpec
    state_dict: dict[str, torch.Tensor]
    labels: LabelSpec = field(default_factory=LabelSpec)
    tissue: TissueSettings | None = None
    config: dict[str, Any] | None = None
    epoch: int = 0
    best_val_loss: float | None = None
    val_loss: float | None = None
    train_state: dict[str, Any] = field(default_factory=dict)
    mrseg_version: str = __version__
    path: Path | None = field(default=None, compare=False)  # the file it was loaded from (for messages)

    def __post_init__(self) -> None:
        if "mpps" in self.model_kwargs:
            raise CheckpointError("checkpoint model kwargs must not repeat the mpps (they live in the input spec)")
        outputs = int(self.model_kwargs.get("num_classes", 1))
        if outputs != self.labels.num_outputs:
            raise CheckpointError(
                f"model has {outputs} output channel(s) but the label spec {list(self.labels.classes)} "
                f"({self.labels.activation}) needs {self.labels.num_outputs}"
            )

    def build_model(self, *, strict: bool = True) -> nn.Module:
        """Rebuild the model from the registry and load the weights (in eval mode)."""
        where = f"{self.path}: " if self.path is not None else ""
        try:
            model = create_model(self.model_name, mpps=list(self.input_spec.mpps), **self.model_kwargs)
            mismatch = state_mismatch(model.state_dict(), self.state_dict) if strict else None
            if mismatch:
                raise CheckpointError(
                    f"{where}weights do not fit model {self.model_name!r} {self.model_kwargs}: {mismatch}"
                )
            model.load_state_dict(self.state_dict, strict=strict)
        except (ModelConfigError, RuntimeError, TypeError, KeyError, ValueError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise CheckpointError(
                f"{where}checkpoint model {self.model_name!r} with {self.model_kwargs} cannot be rebuilt: {first}"
            ) from error
        return model.eval()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "mrseg_version": self.mrseg_version,
            "model": {"name": self.model_name, "kwargs": dict(self.model_kwargs)},
            "input": self.input_spec.to_dict(),
            "labels": self.labels.to_dict(),
            "tissue": self.tissue.to_dict() if self.tissue is not None else None,
            "state_dict": self.state_dict,
            "config": self.config,
            "epoch": int(self.epoch),
            "best_val_loss": self.best_val_loss,
            "val_loss": self.val_loss,
            "train_state": self.train_state,
        }


def save_checkpoint(path: str | os.PathLike[str], checkpoint: Checkpoint) -> Path:
    """Save ``checkpoint`` atomically (temporary file, then rename) and return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(checkpoint.to_dict(), tmp)
    return path


def make_checkpoint(
    model: nn.Module,
    input_spec: InputSpec,
    *,
    labels: LabelSpec | None = None,
    tissue: TissueSettings | None = None,
    config: dict[str, Any] | None = None,
    **extra: Any,
) -> Checkpoint:
    """Build a :class:`Checkpoint` from a registry model (which records ``model.hparams``).

    ``labels`` defaults to the spec of the model's number of outputs
    (:meth:`~mrseg.core.label_spec.LabelSpec.for_outputs`).

    Raises
    ------
    CheckpointError
        The model has no ``hparams`` record, its mpps differ from ``input_spec.mpps``, or its
        number of outputs does not fit ``labels``.
    """
    hparams = getattr(model, "hparams", None)
    if not isinstance(hparams, dict) or "name" not in hparams:
        raise CheckpointError("model has no `hparams` record; build it with mrseg.models.create_model")
    kwargs = {k: v for k, v in hparams.items() if k not in ("name", "mpps")}
    mpps = tuple(float(m) for m in hparams.get("mpps", input_spec.mpps))
    if mpps != input_spec.mpps:
        raise CheckpointError(f"model mpps {list(mpps)} differ from the input spec's {list(input_spec.mpps)}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return Checkpoint(
        model_name=hparams["name"],
        model_kwargs=kwargs,
        input_spec=input_spec,
        state_dict=state,
        labels=labels if labels is not None else LabelSpec.for_outputs(int(kwargs.get("num_classes", 1))),
        tissue=tissue,
        config=config,
        **extra,
    )


def state_mismatch(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], shown: int = 3) -> str:
    """How ``found`` (a checkpoint's weights) differs from ``expected`` (a model's ``state_dict``), in one line.

    Empty when they match: counts of missing keys, unexpected keys and differing shapes, with the
    first ``shown`` of each.
    """

    def first(names: list[str]) -> str:
        return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")

    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k} {list(found[k].shape)} vs {list(expected[k].shape)}"
        for k in expected
        if k in found and tuple(found[k].shape) != tuple(expected[k].shape)
    ]
    parts = [
        f"{len(missing)} key(s) missing ({first(missing)})" if missing else "",
        f"{len(unexpected)} unexpected key(s) ({first(unexpected)})" if unexpected else "",
        f"{len(shapes)} shape(s) differ, checkpoint vs model ({first(shapes)})" if shapes else "",
    ]
    return "; ".join(p for p in parts if p)


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint safely (``weights_only=True``) and validate its layout.

    Raises
    ------
    CheckpointError
        Missing file, not a torch file, not an mrseg checkpoint, or an unknown layout version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for corrupt/unsafe files
        # torch's own text advises weights_only=False: never relay it
        raise CheckpointError(
            f"{path}: not a mrseg checkpoint, or an unsafe pickle: refused ({type(error).__name__})"
        ) from error
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an mrseg checkpoint (no format={FORMAT!r} record)")
    version = raw.get("version")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{path}: checkpoint layout version {version} is not supported (this mrseg reads {list(READABLE_VERSIONS)})"
        )
    try:
        input_spec = InputSpec.from_dict(raw["input"])
        kwargs = dict(raw["model"]["kwargs"])
        if version == 1:  # mpps were stored twice; labels and tissue settings did not exist
            stored = tuple(float(m) for m in kwargs.pop("mpps", input_spec.mpps))
            if stored != input_spec.mpps:
                raise CheckpointError(
                    f"{path}: the model's mpps {list(stored)} and the input spec's {list(input_spec.mpps)} disagree"
                )
        labels = (
            LabelSpec.from_dict(raw["labels"])
            if raw.get("labels")
            else LabelSpec.for_outputs(int(kwargs.get("num_classes", 1)))
        )
        tissue = _tissue_of(raw)
        return Checkpoint(
            model_name=str(raw["model"]["name"]),
            model_kwargs=kwargs,
            input_spec=input_spec,
            state_dict=raw["state_dict"],
            labels=labels,
            tissue=tissue,
            config=raw.get("config"),
            epoch=int(raw.get("epoch", 0)),
            best_val_loss=raw.get("best_val_loss"),
            val_loss=raw.get("val_loss"),
            train_state=raw.get("train_state") or {},
            mrseg_version=str(raw.get("mrseg_version", "?")),
            path=path,
        )
    except (KeyError, TypeError, ValueError, ConfigError) as error:
        raise CheckpointError(f"{path}: checkpoint is missing or has a bad field: {error}") from error


def _tissue_of(raw: dict[str, Any]) -> TissueSettings | None:
    """The training tissue settings of a raw checkpoint (version 1: from its config's ``data.tissue_mpp``)."""
    if isinstance(raw.get("tissue"), dict):
        return TissueSettings.from_dict(raw["tissue"])
    config = raw.get("config")
    if isinstance(config, dict) and isinstance(config.get("data"), dict) and "tissue_mpp" in config["data"]:
        return TissueSettings(mpp=float(config["data"]["tissue_mpp"]))
    return None


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states (torch CPU/CUDA, numpy, Python ``random``) as ``weights_only``-safe values.

    numpy's and Python's states are converted to plain lists/ints so the checkpoint loads with
    ``torch.load(weights_only=True)``.
    """
    np_state: Any = np.random.get_state()  # noqa: NPY002 - the legacy global RNG is what we save
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_state[0]),
            "keys": [int(k) for k in np_state[1]],
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": int(py_version), "internal": [int(v) for v in py_internal], "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` returned (missing parts are left alone)."""
    if "torch" in state:
        torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
    if "numpy" in state:
        s = state["numpy"]
        np.random.set_state(  # noqa: NPY002
            (s["name"], np.asarray(s["keys"], dtype=np.uint32), s["pos"], s["has_gauss"], s["cached_gaussian"])
        )
    if "python" in state:
        s = state["python"]
        random.setstate((s["version"], tuple(s["internal"]), s["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
