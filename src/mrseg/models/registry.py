"""The model registry, built from the classes: ``@register_model(name)`` and ``create_model(name, **options)``.

An architecture is a :class:`~mrseg.models.base.SegmentationModel` subclass whose ``__init__`` takes
``mpps`` and keyword options; decorating it with ``@register_model("name", **presets)`` makes it
buildable as ``create_model("name", mpps=..., **options)``. Presets fix options under that name
(``mrn_bilinear`` is :class:`~mrseg.models.mrn.MRN` with ``upscale="bilinear"``). Every model records
``model.hparams`` such that ``create_model(**model.hparams)`` rebuilds the same architecture;
checkpoints store it (the mpps in their input spec).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mrseg.core.errors import ModelConfigError
from mrseg.models.base import SegmentationModel

ModelT = TypeVar("ModelT", bound=type[SegmentationModel])


@dataclass(frozen=True)
class ModelEntry:
    """One registered name: the class and the options the name fixes."""

    cls: type[SegmentationModel]
    presets: Mapping[str, Any] = field(default_factory=dict)

    def options(self) -> list[str]:
        """Keyword options ``create_model`` accepts under this name (``mpps`` first)."""
        hidden = set(self.presets) | set(getattr(self.cls, "deprecated_options", {}))
        parameters = list(inspect.signature(self.cls.__init__).parameters.values())[1:]
        return [p.name for p in parameters if p.name not in hidden and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


#: Registered architectures: name -> :class:`ModelEntry`, in registration order.
MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, **presets: Any) -> Callable[[ModelT], ModelT]:
    """Class decorator: register a :class:`SegmentationModel` subclass as ``name`` (with fixed ``presets``).

    Raises
    ------
    ModelConfigError
        ``name`` is taken by another class, or the class's ``__init__`` lacks ``mpps`` or a preset.
    """

    def register(cls: ModelT) -> ModelT:
        if name in MODELS and MODELS[name].cls is not cls:
            raise ModelConfigError(f"model {name!r} is already registered ({MODELS[name].cls.__qualname__})")
        parameters = inspect.signature(cls.__init__).parameters
        missing = [p for p in ("mpps", *presets) if p not in parameters]
        if missing:
            raise ModelConfigError(f"{cls.__qualname__}.__init__ has no parameter(s) {missing} to register {name!r}")
        MODELS[name] = ModelEntry(cls, dict(presets))
        return cls

    return register


def model_names() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return list(MODELS)


def model_entry(name: str) -> ModelEntry:
    """The entry registered as ``name`` (raises :class:`ModelConfigError` listing the names)."""
    if not isinstance(name, str) or name not in MODELS:
        raise ModelConfigError(f"unknown model {name!r}; choose one of {model_names()}")
    return MODELS[name]


def model_options(name: str) -> list[str]:
    """Keyword options :func:`create_model` accepts for ``name`` (``mpps`` first)."""
    return model_entry(name).options()


def create_model(name: str, *, mpps: Sequence[float], **options: Any) -> SegmentationModel:
    """Build a registered network, passing ``options`` through to its class.

    Parameters
    ----------
    name
        A registered name (:func:`model_names`: ``"unet"``, ``"mrn_bilinear"``, ``"mrn_transposed"``).
    mpps
        Microns per pixel of the input patches, finest first (one value for ``unet``).
    **options
        The class's options (:func:`model_options`), e.g. ``num_classes``, ``width``, ``depth``,
        ``in_channels``, and for the MRNs ``fuser``.

    Returns
    -------
    SegmentationModel
        Maps ``(N, J, in_channels, H, W)`` float to logits ``(N, num_classes, H, W)`` of the finest
        patch; has ``.hparams`` and ``.required_multiple`` (H and W must be multiples of it).

    Raises
    ------
    ModelConfigError
        Unknown name, an option the name does not take (the message lists those it does), or a
        configuration the network cannot take.
    """
    entry = model_entry(name)
    accepted = entry.options()
    unknown = [key for key in options if key not in accepted]
    if unknown:
        fixed = {key: entry.presets[key] for key in unknown if key in entry.presets}
        note = f" ({name} fixes {fixed}; choose another model name)" if fixed else ""
        raise ModelConfigError(f"{name} takes no option {unknown}{note}; it accepts {accepted}")
    if isinstance(mpps, (str, bytes)) or not isinstance(mpps, Sequence):
        raise ModelConfigError(f"mpps must be a sequence of microns per pixel, got {mpps!r}")
    return entry.cls(mpps=mpps, **entry.presets, **options)  # type: ignore[call-arg]
