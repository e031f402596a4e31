"""The typed training configuration: one frozen tree loaded from YAML, overridable field by field.

The tree has seven sections (``model``, ``labels``, ``data``, ``sampling``, ``augment``, ``train``,
``output``). Every field is validated by pydantic; unknown keys are errors. ``--set a.b=value``
overrides parse ``value`` as YAML (``2``, ``0.5``, ``[0.5, 1.0]``, ``true``, ``null``) and re-validate
the whole tree, so a bad override fails with the dotted key in the message.

``labels`` is the task's :class:`~mrseg.core.label_spec.LabelSpec` and ``data.tissue`` the
:class:`~mrseg.core.tissue_spec.TissueSettings` of sampling; both are stored in every checkpoint.
``model.num_classes`` (the network's output channels) and ``labels`` must agree
(``num_classes == labels.num_outputs``): a file that gives only one of them gets the other derived
(no ``labels``: :meth:`LabelSpec.for_outputs`, the binary CAMELYON spec for one output), and an
override of only one of them re-derives the other.

Units: mpp values are microns per pixel; ``patch_size`` is pixels at each patch's own mpp;
``jitter_um`` is microns.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from mrseg.core.atomic import atomic_write_text
from mrseg.core.errors import ConfigError
from mrseg.core.label_spec import LabelSpec
from mrseg.core.overrides import parse_overrides, yaml_problem
from mrseg.training.sections import (
    AugmentConfig,
    DataConfig,
    ModelConfig,
    OutputConfig,
    SamplingConfig,
    Section,
    TrainConfig,
    core_type,
)

log = logging.getLogger(__name__)

#: Slides of the CAMELYON16 training set whose lesion annotations are not exhaustive (official README).
CAMELYON16_NON_EXHAUSTIVE: tuple[str, ...] = tuple(
    f"tumor_{n:03d}" for n in (10, 15, 18, 20, 25, 29, 33, 34, 44, 46, 51, 54, 55, 56, 67, 79, 85, 92, 95, 110)
)

#: Old spellings still read (with a warning): dotted old key -> dotted new key.
DEPRECATED_KEYS: dict[str, str] = {"data.tissue_mpp": "data.tissue.mpp"}


class Config(Section):
    """The whole training configuration."""

    model: ModelConfig = ModelConfig()
    labels: LabelSpec = Field(default_factory=LabelSpec, description="classes, label map, colours, activation")
    data: DataConfig = DataConfig()
    sampling: SamplingConfig = SamplingConfig()
    augment: AugmentConfig = AugmentConfig()
    train: TrainConfig = TrainConfig()
    output: OutputConfig = OutputConfig()

    _labels = field_validator("labels", mode="wrap")(core_type)

    @model_validator(mode="before")
    @classmethod
    def _derive_labels_or_outputs(cls, data: Any) -> Any:
        """Fill in whichever of ``labels`` and ``model.num_classes`` is missing from the other."""
        if not isinstance(data, dict):
            return data
        model = data.get("model", {})
        if not isinstance(model, dict | ModelConfig):
            return data
        given = model.model_fields_set if isinstance(model, ModelConfig) else set(model)
        if "labels" not in data:
            outputs = model.num_classes if isinstance(model, ModelConfig) else model.get("num_classes", 1)
            if isinstance(outputs, int) and outputs >= 1:
                data = {**data, "labels": LabelSpec.for_outputs(outputs)}
        elif "num_classes" not in given and isinstance(model, dict):
            try:
                outputs = _as_label_spec(data["labels"]).num_outputs
            except (ConfigError, AttributeError, TypeError, ValueError):
                return data  # the field validator reports the bad labels section
            data = {**data, "model": {**model, "num_classes": outputs}}
        return data

    @model_validator(mode="after")
    def _outputs_fit_labels(self) -> Config:
        if self.model.num_classes != self.labels.num_outputs:
            raise ValueError(
                f"model.num_classes={self.model.num_classes} does not fit labels: classes "
                f"{list(self.labels.classes)} with {self.labels.activation} need {self.labels.num_outputs} "
                "output channel(s); set model.num_classes to that or leave it out"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (lists, not tuples) for YAML and checkpoints."""
        return _plain(self.model_dump(mode="json"))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the resolved config as YAML (atomically)."""
        return atomic_write_text(path, self.to_yaml())


def _as_label_spec(value: Any) -> LabelSpec:
    """A :class:`LabelSpec` from a spec or its plain form (used before the config is validated)."""
    return value if isinstance(value, LabelSpec) else LabelSpec.from_dict(value)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def _format_errors(error: ValidationError, source: str) -> str:
    parts = []
    for e in error.errors():
        key = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            msg = "unknown key"
        parts.append(f"{key}: {msg}" if key else msg)
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
            raise ConfigError(f"{file}: not valid YAML ({yaml_problem(error)})") from None
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

    Deprecated keys (:data:`DEPRECATED_KEYS`) are renamed with a warning. Setting only one of
    ``model.num_classes`` and ``labels.*`` re-derives the other (a ``num_classes`` change keeps
    labels that were given explicitly, and then must fit them).

    Raises
    ------
    ConfigError
        Unknown key or invalid value (the key is named).
    """
    if not values:
        return config
    values = {_current_key(key): value for key, value in values.items()}
    data = config.to_dict()
    _drop_derived(data, config, set(values))
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


def _current_key(key: str) -> str:
    """The current spelling of a dotted key (deprecated ones are renamed with a warning)."""
    if key in DEPRECATED_KEYS:
        log.warning("%s is deprecated: write %s", key, DEPRECATED_KEYS[key])
        return DEPRECATED_KEYS[key]
    return key


def _drop_derived(data: dict[str, Any], config: Config, keys: set[str]) -> None:
    """Remove from ``data`` the derived values that the overridden ``keys`` must re-derive.

    Only one of ``model.num_classes`` and ``labels`` set: the other is derived again. New
    ``labels.classes`` without new colours or activation: those go back to their defaults for the
    new classes unless they were chosen explicitly (differ from the old classes' defaults).
    """
    outputs_set = "model.num_classes" in keys or "model" in keys
    labels_set = any(k == "labels" or k.startswith("labels.") for k in keys)
    if labels_set and not outputs_set:
        del data["model"]["num_classes"]
    elif outputs_set and not labels_set and config.labels == LabelSpec.for_outputs(config.model.num_classes):
        del data["labels"]
    if "labels.classes" in keys:
        derived = LabelSpec(classes=config.labels.classes)
        if "labels.colors" not in keys and config.labels.colors == derived.colors:
            data["labels"]["colors"] = []
        if "labels.activation" not in keys and config.labels.activation == derived.activation:
            data["labels"]["activation"] = None


def _is_free_mapping(parts: list[str]) -> bool:
    """``model.kwargs.<anything>`` and ``labels.label_map.<name>`` accept new keys."""
    return len(parts) == 3 and tuple(parts[:2]) in (("model", "kwargs"), ("labels", "label_map"))


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
