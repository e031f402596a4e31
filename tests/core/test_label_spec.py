"""The label spec: classes, label map, colours, activation, outputs, checks, (de)serialisation."""

from __future__ import annotations

import pytest

from mrseg.core.errors import ConfigError, DataError
from mrseg.core.label_spec import DEFAULT_LABEL_MAP, EXCLUDE, PALETTE, LabelSpec, normalise_label_map

FOUR = ("background", "tumour", "lymphoid", "other")


def test_default_is_the_binary_camelyon_spec() -> None:
    spec = LabelSpec()
    assert spec.classes == ("background", "tumor") and spec.is_binary and spec.foreground == ("tumor",)
    assert spec.activation == "sigmoid" and spec.num_outputs == 1 and spec.num_classes == 2
    assert spec.label_map == DEFAULT_LABEL_MAP and spec.label_map["_2"] == EXCLUDE
    assert spec.colors == PALETTE[:2] and spec.color(1) == PALETTE[1]


def test_multiclass_spec() -> None:
    spec = LabelSpec(classes=FOUR, label_map={"Tumour": 1, "LYMPHOID": 2, "other": 3, "exclusion": -1})
    assert spec.activation == "softmax" and spec.num_outputs == 4 and not spec.is_binary
    assert spec.label_map == {"tumour": 1, "lymphoid": 2, "other": 3, "exclusion": -1}  # names case-folded
    assert len(spec.colors) == 4
    assert LabelSpec(activation="softmax").num_outputs == 2  # two classes may use softmax


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"classes": ("background",)}, "at least one class"),
        ({"classes": ("a", "A")}, "unique"),
        ({"label_map": {"x": 2}}, r"points at label\(s\) >= the number of classes"),
        ({"label_map": {"x": -2}}, r"must be in \[-1, 255\]"),
        ({"label_map": {"x": "one"}}, "invalid label map"),
        ({"colors": ((0, 0, 0),)}, "1 colours for 2 classes"),
        ({"colors": ((0, 0, 0), (0, 0, 256))}, "RGB triples"),
        ({"activation": "relu"}, "sigmoid or softmax"),
        ({"classes": FOUR, "activation": "sigmoid"}, "sigmoid activation is for two classes"),
    ],
)
def test_bad_specs_are_config_errors(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        LabelSpec(**kwargs)


def test_check_label_names_the_source() -> None:
    spec = LabelSpec(classes=FOUR, label_map={})
    for label in (0, 3):
        spec.check_label(label, "a.tif")
    for label in (4, 255, -1):
        with pytest.raises(DataError, match=rf"^a\.tif: label {label} is not a class .*labels 0\.\.3\)"):
            spec.check_label(label, "a.tif")


def test_round_trip_and_defaults() -> None:
    spec = LabelSpec(classes=FOUR, label_map={"tumour": 1}, colors=((0, 0, 0), (1, 2, 3), (4, 5, 6), (7, 8, 9)))
    assert LabelSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["colors"][1] == [1, 2, 3]
    assert LabelSpec.from_dict({}) == LabelSpec()


def test_for_outputs() -> None:
    assert LabelSpec.for_outputs(1) == LabelSpec()
    three = LabelSpec.for_outputs(3)
    assert three.classes == ("background", "class_1", "class_2") and three.activation == "softmax"
    assert LabelSpec.for_outputs(4, FOUR).classes == FOUR


def test_normalise_label_map() -> None:
    assert normalise_label_map(None) == DEFAULT_LABEL_MAP
    assert normalise_label_map({"A": 1, "b": EXCLUDE}) == {"a": 1, "b": -1}
    with pytest.raises(ValueError, match="must be in"):
        normalise_label_map({"a": 256})
