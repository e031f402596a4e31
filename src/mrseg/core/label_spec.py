"""What the labels mean: class names, the map from annotation groups to labels, colours, activation.

:class:`LabelSpec` is the one definition of a segmentation task's classes. It lives in the
training configuration and in every checkpoint, so that annotations are read into the same
labels in training and evaluation, the network has the right number of outputs, predictions are
activated the same way everywhere, and outputs (maps, GeoJSON, viewer layers) carry each class's
name and colour.

Labels are ``uint8`` values: ``0`` is background, ``1 .. C-1`` are the classes ``classes[1:]``;
:data:`EXCLUDE` (``-1``) marks annotation groups whose regions are cut out of every positive region
(CAMELYON ``_2`` / ``Exclusion``).

Activation (the class rule): ``"sigmoid"`` means one logit, the probability of the foreground
(binary tasks, two classes); ``"softmax"`` means one logit per class, probabilities summing to 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mrseg.core.errors import ConfigError, DataError

EXCLUDE = -1
"""Label value of exclusion regions: they are cut out of every positive region (CAMELYON ``_2``)."""

DEFAULT_LABEL_MAP: dict[str, int] = {
    "_0": 1,
    "_1": 1,
    "tumor": 1,
    "tumour": 1,
    "metastases": 1,
    "_2": EXCLUDE,
    "exclusion": EXCLUDE,
    "exclude": EXCLUDE,
}
"""Group/class name (case-insensitive) -> label. CAMELYON16/17: ``_0``, ``_1``, ``Tumor`` are tumour
(label 1); ``_2`` and ``Exclusion`` are non-tumour regions cut out of the tumour ones."""

Activation = Literal["sigmoid", "softmax"]
RGB = tuple[int, int, int]

#: Colours given to classes without one (index 0 is the background).
PALETTE: tuple[RGB, ...] = (
    (0, 0, 0),
    (200, 0, 0),
    (0, 150, 200),
    (240, 160, 0),
    (120, 60, 200),
    (0, 170, 90),
    (230, 90, 170),
    (130, 130, 130),
)


def normalise_label_map(label_map: Mapping[str, int] | None) -> dict[str, int]:
    """Return ``label_map`` (or the default) with case-folded keys; labels must be >= -1 and <= 255.

    Raises
    ------
    ValueError
        A label outside ``[-1, 255]`` or not an integer.
    """
    source = DEFAULT_LABEL_MAP if label_map is None else label_map
    out: dict[str, int] = {}
    for name, label in source.items():
        value = int(label)
        if value < EXCLUDE or value > 255:
            raise ValueError(f"label for {name!r} must be in [-1, 255] (-1 = exclusion), got {label!r}")
        out[str(name).casefold()] = value
    return out


@dataclass(frozen=True)
class LabelSpec:
    """The classes of a segmentation task.

    Attributes
    ----------
    classes
        Class names by label value; ``classes[0]`` is the background. At least two.
    label_map
        Annotation group / class name (case-insensitive) -> label value (``-1`` = exclusion).
    colors
        RGB colour per class (same length as ``classes``); missing ones come from :data:`PALETTE`.
    activation
        ``"sigmoid"`` (one logit; only for two classes) or ``"softmax"`` (one logit per class).
        ``None`` chooses sigmoid for two classes and softmax otherwise.

    Raises
    ------
    ConfigError
        Fewer than two classes, duplicate names, a label map pointing at an unknown class, bad
        colours, or sigmoid with more than two classes.
    """

    classes: tuple[str, ...] = ("background", "tumor")
    label_map: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_LABEL_MAP))
    colors: tuple[RGB, ...] = ()
    activation: Activation | None = None

    def __post_init__(self) -> None:
        classes = tuple(str(c) for c in self.classes)
        if len(classes) < 2:
            raise ConfigError(f"labels need a background and at least one class, got {list(classes)}")
        if len(set(c.casefold() for c in classes)) != len(classes):
            raise ConfigError(f"class names must be unique, got {list(classes)}")
        try:
            label_map = normalise_label_map(self.label_map)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"invalid label map: {error}") from None
        bad = {name: v for name, v in label_map.items() if v >= len(classes)}
        if bad:
            raise ConfigError(
                f"label map {bad} points at label(s) >= the number of classes {len(classes)} ({list(classes)})"
            )
        colors = tuple(tuple(int(v) for v in c) for c in self.colors)
        if colors and len(colors) != len(classes):
            raise ConfigError(f"{len(colors)} colours for {len(classes)} classes")
        if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in colors):
            raise ConfigError(f"colours are RGB triples in 0..255, got {list(colors)}")
        if not colors:
            colors = tuple(PALETTE[i % len(PALETTE)] for i in range(len(classes)))
        activation = self.activation or ("sigmoid" if len(classes) == 2 else "softmax")
        if activation not in ("sigmoid", "softmax"):
            raise ConfigError(f"activation must be sigmoid or softmax, got {activation!r}")
        if activation == "sigmoid" and len(classes) != 2:
            raise ConfigError(f"sigmoid activation is for two classes; {len(classes)} classes need softmax")
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "label_map", label_map)
        object.__setattr__(self, "colors", colors)
        object.__setattr__(self, "activation", activation)

    # -- derived -------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Number of classes including the background."""
        return len(self.classes)

    @property
    def num_outputs(self) -> int:
        """Logit channels of the network: 1 with sigmoid, one per class with softmax."""
        return 1 if self.activation == "sigmoid" else len(self.classes)

    @property
    def foreground(self) -> tuple[str, ...]:
        """Names of the non-background classes (labels ``1 .. C-1``)."""
        return self.classes[1:]

    @property
    def is_binary(self) -> bool:
        """Two classes (background and one foreground class)."""
        return len(self.classes) == 2

    def color(self, label: int) -> RGB:
        """Colour of a label value."""
        return self.colors[label]  # type: ignore[return-value]

    def check_label(self, label: int, source: str) -> None:
        """Raise :class:`DataError` naming ``source`` when ``label`` is not a class of this spec."""
        if not 0 <= int(label) < len(self.classes):
            raise DataError(
                f"{source}: label {label} is not a class of the label spec (classes {list(self.classes)}, "
                f"labels 0..{len(self.classes) - 1})"
            )

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for checkpoints, configs and prediction records."""
        return {
            "classes": list(self.classes),
            "label_map": dict(self.label_map),
            "colors": [list(c) for c in self.colors],
            "activation": self.activation,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LabelSpec:
        """Inverse of :meth:`to_dict`; missing keys take their defaults."""
        return cls(
            classes=tuple(d.get("classes", ("background", "tumor"))),
            label_map=dict(d.get("label_map", DEFAULT_LABEL_MAP)),
            colors=tuple(tuple(c) for c in d.get("colors", ())),  # type: ignore[misc]
            activation=d.get("activation"),
        )

    @classmethod
    def for_outputs(cls, num_outputs: int, names: Sequence[str] | None = None) -> LabelSpec:
        """The default spec of a network with ``num_outputs`` logits (1: binary tumour; C: softmax over C).

        Used for checkpoints written before label specs existed and for configs that give only
        ``model.num_classes``.
        """
        if num_outputs == 1:
            return cls()
        classes = tuple(names) if names else ("background", *(f"class_{k}" for k in range(1, num_outputs)))
        return cls(classes=classes, activation="softmax")


__all__ = [
    "DEFAULT_LABEL_MAP",
    "EXCLUDE",
    "PALETTE",
    "Activation",
    "LabelSpec",
    "normalise_label_map",
]
