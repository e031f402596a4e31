"""Start-up: what the viewer serves is found and checked before the server starts (clear errors, not blank pages)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from mrseg.core.errors import AnnotationError, ConfigError, DataError, MrsegError, SlideError
from mrseg.core.label_spec import LabelSpec
from mrseg.demo.viewer import view_command
from mrseg.view.catalog import as_id, build_catalog, parse_predictions
from mrseg.wsi.tiff import write_pyramidal_tiff
from view_scenes import SLIDE_H, SLIDE_W, map_values, truth_xml, write_prediction, write_slide


def test_a_folder_of_slides_with_predictions_and_a_truth_folder(tmp_path: Path) -> None:
    for name in ("a", "b c"):
        write_slide(tmp_path / "slides" / f"{name}.tif")
    (tmp_path / "slides" / "notes.txt").write_text("not a slide")
    write_prediction(tmp_path / "p", tmp_path / "slides" / "a.tif", map_values((150, 250)), 2.0)
    truth_xml((tmp_path / "truth").mkdir() or tmp_path / "truth" / "b c.xml")
    catalog = build_catalog(tmp_path / "slides", {"m": tmp_path / "p"}, tmp_path / "truth")
    try:
        assert list(catalog.slides) == ["a", "b-c"]
        assert list(catalog.slides["a"].layers) == ["m"] and not catalog.slides["b-c"].layers
        assert catalog.slides["b-c"].truth is not None and catalog.slides["a"].truth is None
    finally:
        catalog.close()


def test_a_manifest_folder_gives_slides_and_their_annotations(tmp_path: Path) -> None:
    write_slide((tmp_path / "slides").mkdir() or tmp_path / "slides" / "s.tif")
    truth_xml(tmp_path / "s.xml")
    (tmp_path / "manifest.csv").write_text("slide,annotation\nslides/s.tif,s.xml\n")
    catalog = build_catalog(tmp_path)
    try:
        assert catalog.slides["s"].truth_path == (tmp_path / "s.xml").resolve()
    finally:
        catalog.close()


def test_multi_class_maps_and_a_mask_as_truth(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "s.tif")
    labels = LabelSpec(("background", "tumor", "lymphoid"), {"tumor": 1, "lymphoid": 2})
    values = map_values((300, 500))
    extra = {"class1": values // 2, "class2": values // 3}
    write_prediction(tmp_path / "p", slide, values, 1.0, labels=labels, extra=extra)
    mask = np.zeros((SLIDE_H // 4, SLIDE_W // 4), np.uint8)
    mask[10:40, 20:60] = 2
    write_pyramidal_tiff(tmp_path / "s_mask.tif", mask, 2.0, compression="zlib")
    catalog = build_catalog(slide, {"m": tmp_path / "p"}, tmp_path / "s_mask.tif")
    try:
        layer = catalog.slides["s"].layers["m"]
        assert [(m.key, m.name) for m in layer.maps.values()] == [
            ("map", "foreground"),
            ("class1", "tumor"),
            ("class2", "lymphoid"),
        ]
        assert catalog.labels == labels and catalog.slides["s"].truth.labels == (2,)  # type: ignore[union-attr]
    finally:
        catalog.close()


def test_an_unreadable_slide_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(SlideError, match=r"bad\.tif"):
        build_catalog(tmp_path / "bad.tif")
    with pytest.raises(DataError, match="no such slide"):
        build_catalog(tmp_path / "missing.tif")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no slide files"):
        build_catalog(tmp_path / "empty")


def test_a_map_that_does_not_match_its_slide_is_an_error(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "s.tif")
    write_prediction(tmp_path / "size", slide, map_values((150, 250)), 2.0, slide_dims=(1200, 600))
    with pytest.raises(DataError, match=r"1200x600 slide.*does not match its slide"):
        build_catalog(slide, {"m": tmp_path / "size"})
    write_prediction(tmp_path / "grid", slide, map_values((100, 250)), 2.0)  # 100 rows of 4 px: 400 of 600
    with pytest.raises(DataError, match="does not match its slide"):
        build_catalog(slide, {"m": tmp_path / "grid"})
    record = write_prediction(tmp_path / "broken", slide, map_values((150, 250)), 2.0)
    (record.parent / "s.tif").write_bytes(b"II*\x00" + bytes(20))
    with pytest.raises(MrsegError, match=r"s\.tif"):
        build_catalog(slide, {"m": tmp_path / "broken"})


def test_predictions_of_other_slides_and_bad_names_are_errors(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "s.tif")
    write_prediction(tmp_path / "p", write_slide(tmp_path / "other.tif"), map_values((150, 250)), 2.0)
    with pytest.raises(DataError, match="none of the slides"):
        build_catalog(slide, {"m": tmp_path / "p"})
    with pytest.raises(DataError, match="no finished predictions"):
        build_catalog(slide, {"m": tmp_path})
    with pytest.raises(ConfigError, match="may hold only"):
        parse_predictions(["../x=/tmp"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_predictions(["a=/x", "a=/y"])
    assert parse_predictions(["/runs/preds/unet_1", "m=p"]) == {"unet_1": Path("/runs/preds/unet_1"), "m": Path("p")}


def test_bad_truth_is_an_error(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "s.tif")
    (tmp_path / "s.xml").write_text("<ASAP_Annotations><Annotations>")
    with pytest.raises(AnnotationError, match=r"s\.xml"):
        build_catalog(slide, truth=tmp_path / "s.xml")
    write_slide(tmp_path / "t.tif")
    with pytest.raises(ConfigError, match="one file is the truth of one slide"):
        build_catalog(tmp_path, truth=tmp_path / "s.xml")


def test_ids_hold_only_safe_characters() -> None:
    assert as_id("test 001 (HE)") == "test-001--HE" and as_id("../..") == "slide" and as_id("a.b_c-d") == "a.b_c-d"
    assert json.dumps(as_id("é")) == '"slide"'


def test_the_demos_view_command_opens_its_test_slides_with_every_model(tmp_path: Path) -> None:
    test = tmp_path / "demo" / "data" / "test"
    slide = write_slide((test / "slides").mkdir(parents=True) or test / "slides" / "test_000.tif")
    truth_xml((test / "annotations").mkdir() or test / "annotations" / "test_000.xml")
    (test / "manifest.csv").write_text("slide,annotation\nslides/test_000.tif,annotations/test_000.xml\n")
    models = ["unet_0.5", "mrn_bilinear"]
    for key in models:
        write_prediction(tmp_path / "demo" / "preds" / "test" / key, slide, map_values((150, 250)), 2.0)
    words = shlex.split(view_command(tmp_path / "demo", models))
    assert words[:2] == ["mrseg", "view"]
    preds = parse_predictions([w for i, w in enumerate(words) if i and words[i - 1] == "--pred"])
    catalog = build_catalog(words[2], preds, words[words.index("--truth") + 1])
    try:
        assert list(catalog.slides["test_000"].layers) == models and catalog.slides["test_000"].truth is not None
    finally:
        catalog.close()
