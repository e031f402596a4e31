"""The typed training configuration: one frozen tree loaded from YAML, overridable field by field.

The tree has six sections (``model``, ``data``, ``sampling``, ``augment``, ``train``, ``output``).
Every field is validated by pydantic; unknown keys are errors. ``--set a.b=value`` overrides parse
``value`` as YAML (``2``, ``0.5``, ``[0.5, 1.0]``, ``true``, ``null``) and re-validate the whole tree, so
a bad override fails with the dotted key in the message.

Units: mpp values are microns per pixel; ``patch_size`` is pixels at each patch's own mpp;
``jitter_um`` is microns.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mrseg.core.atomic import atomic_write_text
from mrseg.core.errors import ConfigError
from mrseg.core.input_spec import DEFAULT_MEAN, DEFAULT_STD, InputSpec
from mrseg.core.overrides import parse_overrides
from mrseg.core.tissue_spec import DEFAULT_TISSUE_MPP

#: Slides of the CAMELYON16 training set whose lesion annotations are not exhaustive (official README).
CAMELYON16_NON_EXHAUSTIVE: tuple[str, ...] = tuple(
    f"tumor_{n:03d}" for n in (10, 15, 18, 20, 25, 29, 33, 34, 44, 46, 51, 54, 55, 56, 67, 79, 85, 92, 95, 110)
)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelConfig(_Section):
    """Network and input definition (everything that shapes the model; stored in checkpoints)."""

    name: Literal["unet", "mrn_bilinear", "mrn_transposed"] = "mrn_bilinear"
    mpps: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    patch_size: int = Field(default=512, gt=0, description="edge of every square patch, pixels at its own mpp")
    num_classes: int = Field(default=1, ge=1, description="1: binary (sigmoid + BCE); >1: softmax + cross-entropy")
    width: int = Field(default=32, gt=0, description="channels of the first encoder stage")
    depth: int = Field(default=4, gt=0, description="number of down-sampling stages")
    mean: tuple[float, float, float] = DEFAULT_MEAN
    std: tuple[float, float, float] = DEFAULT_STD
    kwargs: dict[str, Any] = Field(default_factory=dict, description="extra create_model keyword arguments")

    @field_validator("mpps")
    @classmethod
    def _mpps_ascending(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(m <= 0 for m in v):
            raise ValueError("mpps must be a non-empty list of positive microns-per-pixel values")
        if list(v) != sorted(v) or len(set(v)) != len(v):
            raise ValueError(f"mpps must be strictly ascending (finest first), got {list(v)}")
        return v

    @model_validator(mode="after")
    def _unet_single(self) -> ModelConfig:
        if self.name == "unet" and len(self.mpps) != 1:
            raise ValueError(f"model 'unet' takes exactly one mpp, got {list(self.mpps)} (set model.mpps=[X])")
        return self

    def input_spec(self) -> InputSpec:
        """The :class:`~mrseg.core.input_spec.InputSpec` stored in checkpoints."""
        return InputSpec(mpps=self.mpps, size_px=self.patch_size, mean=self.mean, std=self.std)

    def create_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`mrseg.models.create_model` (besides the name)."""
        return {
            "mpps": list(self.mpps),
            "num_classes": self.num_classes,
            "width": self.width,
            "depth": self.depth,
            **self.kwargs,
        }


class DataConfig(_Section):
    """Where the slides are, which to drop, and how to split them."""

    path: str | None = Field(default=None, description="manifest (CSV/YAML), CAMELYON16 folder or synth folder")
    exclude: tuple[str, ...] = Field(default=(), description="slide names (file stems) to leave out")
    val_fraction: float = Field(default=0.2, ge=0.0, lt=1.0, description="held-out share of slides")
    split: Literal["auto", "manifest", "random"] = "auto"
    split_seed: int = 0
    backend: Literal["auto", "openslide", "tiffslide"] = "auto"
    tissue_mpp: float = Field(default=DEFAULT_TISSUE_MPP, gt=0, description="mpp of the tissue mask used for sampling")
    num_workers: int = Field(default=2, ge=0, description="DataLoader worker processes per training process")
    prefetch_factor: int = Field(default=4, ge=1)


class SamplingConfig(_Section):
    """How patch centres are drawn (level-0 pixels, inside tissue)."""

    positive_fraction: float = Field(default=0.5, ge=0.0, le=1.0, description="share of centres in positive regions")
    jitter_um: float = Field(default=0.0, ge=0.0, description="uniform +- jitter of each centre, microns")
    val_samples: int = Field(default=256, gt=0, description="fixed, seeded validation centres (all ranks together)")
    seed: int = 0


class AugmentConfig(_Section):
    """Training augmentation (never applied in validation); colour magnitudes are +- ranges."""

    enabled: bool = True
    flips: bool = True
    rot90: bool = True
    brightness: float = Field(default=0.1, ge=0.0, description="additive, fraction of full range")
    contrast: float = Field(default=0.1, ge=0.0, description="multiplicative about the mean")
    saturation: float = Field(default=0.1, ge=0.0, description="multiplicative blend with grey")
    hed: float = Field(default=0.03, ge=0.0, description="H&E optical-density jitter (scale and shift sigma)")


class TrainConfig(_Section):
    """Optimisation (the paper's recipe by default)."""

    epochs: int = Field(default=500, ge=1)
    steps_per_epoch: int = Field(default=100, ge=1, description="optimiser steps per epoch and process")
    batch_size: int = Field(default=16, ge=1, description="patches per step and process")
    lr: float = Field(default=1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(default=1e-8, gt=0)
    l2: float = Field(default=0.005, ge=0.0, description="Keras L2: l2 * sum(w^2), conv weights")
    dice_weight: float = Field(default=0.0, ge=0.0, description="weight of a soft-Dice term added to BCE/CE")
    patience: int | None = Field(default=None, ge=1, description="early stopping: epochs without val improvement")
    scheduler: Literal["none", "plateau", "cosine", "step"] = "none"
    scheduler_factor: float = Field(default=0.5, gt=0.0, lt=1.0, description="plateau/step LR factor")
    scheduler_patience: int = Field(default=10, ge=0, description="plateau: epochs to wait")
    scheduler_step: int = Field(default=50, ge=1, description="step: epochs between decays")
    amp: Literal["none", "bf16", "fp16"] = "none"
    sync_batchnorm: bool = False
    seed: int = 0
    deterministic: bool = True
    num_threads: int = Field(default=0, ge=0, description="torch intra-op threads of the trainer (0: default)")


class OutputConfig(_Section):
    """What the run folder gets besides checkpoints and metrics.csv."""

    progress: bool = Field(default=True, description="rich progress bars (off automatically when not a TTY)")
    tensorboard: bool = True
    plot: bool = True


class Config(_Section):
    """The whole training configuration."""

    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    sampling: SamplingConfig = SamplingConfig()
    augment: AugmentConfig = AugmentConfig()
    train: TrainConfig = TrainConfig()
    output: OutputConfig = OutputConfig()

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (lists, not tuples) for YAML and checkpoints."""
        return _plain(self.model_dump(mode="json"))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the resolved config as YAML (atomically)."""
        return atomic_write_text(path, self.to_yaml())


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def _format_errors(error: ValidationError, source: str) -> str:
    parts = []
    for e in error.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{key}: {msg}")
    return f"{source}: invalid configuration: " + "; ".join(parts)


def config_from_dict(data: dict[str, Any], *, source: str = "config") -> Config:
    """Validate a plain dictionary into a :class:`Config`.

    Raises
    ------
    ConfigError
        Naming every bad key (dotted) and the reason.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_errors(error, source)) from None


def load_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config (defaults when ``path`` is None) and apply ``key=value`` overrides.

    Parameters
    ----------
    path
        A YAML file; a bare name such as ``synthetic_unet`` is looked up in the packaged configs.
    overrides
        ``"section.field=value"`` strings; ``value`` is parsed as YAML.
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        file = resolve_config_path(path)
        source = str(file)
        try:
            loaded = yaml.safe_load(file.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(f"{file}: not valid YAML: {error}") from None
        if loaded is not None:
            if not isinstance(loaded, dict):
                raise ConfigError(f"{file}: expected a mapping at the top level")
            data = loaded
    config = config_from_dict(data, source=source)
    return apply_overrides(config, overrides)


def resolve_config_path(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` if it exists, else the packaged ``configs/<path>[.yaml]``."""
    file = Path(path)
    if file.is_file():
        return file
    packaged = packaged_configs_dir() / file.name
    for candidate in (packaged, packaged.with_name(packaged.name + ".yaml")):
        if candidate.is_file():
            return candidate
    names = ", ".join(sorted(p.stem for p in packaged_configs_dir().glob("*.yaml")))
    raise ConfigError(f"{path}: config file not found (packaged configs: {names})")


def packaged_configs_dir() -> Path:
    """The folder of the YAML recipes shipped with mrseg."""
    return Path(__file__).resolve().parents[1] / "configs"


def apply_overrides(config: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """Apply ``"a.b=value"`` overrides (``value`` parsed as YAML) to ``config`` and re-validate.

    Raises
    ------
    ConfigError
        Malformed override, unknown key, or a value of the wrong type (the key is named).
    """
    values = parse_overrides(overrides, option="override")
    return update_config(config, values)


def update_config(config: Config, values: dict[str, Any]) -> Config:
    """Set dotted keys to (already parsed) values and re-validate, e.g. ``{"data.path": "/x"}``.

    Raises
    ------
    ConfigError
        Unknown key or invalid value (the key is named).
    """
    if not values:
        return config
    data = config.to_dict()
    for key, value in values.items():
        node: Any = data
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"override {key}: unknown key {'.'.join(parts[: depth + 1])!r}")
            node = node[part]
        leaf = parts[-1]
        if not isinstance(node, dict) or (leaf not in node and not _is_free_mapping(parts)):
            raise ConfigError(f"override {key}: unknown key {key!r}")
        node[leaf] = value
    return config_from_dict(data, source="--set")


def _is_free_mapping(parts: list[str]) -> bool:
    """``model.kwargs.<anything>`` accepts new keys."""
    return len(parts) == 3 and parts[0] == "model" and parts[1] == "kwargs"


def diff_configs(a: Config, b: Config) -> list[str]:
    """Dotted keys whose values differ between two configs."""
    out: list[str] = []

    def walk(x: Any, y: Any, prefix: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k), y.get(k), f"{prefix}.{k}" if prefix else k)
        elif x != y:
            out.append(prefix)

    walk(a.to_dict(), b.to_dict(), "")
    return out
