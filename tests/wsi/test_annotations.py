"""Tests of mrseg.wsi.annotations: readers, repair, rasterisation grid, masks, sampling."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import shapely
from PIL import Image
from shapely.geometry import Point, Polygon
from skimage.draw import polygon as sk_polygon

from mrseg.core.errors import AnnotationError
from mrseg.wsi.annotations import (
    EXCLUDE,
    MaskAnnotations,
    Region,
    VectorAnnotations,
    load_annotations,
    rasterize,
    sniff_format,
)
from mrseg.wsi.annotations.stats import warn_outside
from mrseg.wsi.tiff import write_pyramidal_tiff


# ---------------------------------------------------------------------------------------- helpers
def asap_xml(
    annotations: list[tuple[str, str, str, list[tuple[float, float]]]], orders: list[int] | None = None
) -> str:
    """ASAP XML text from ``(name, type, group, vertices)``; ``orders`` permutes the written order."""
    parts = ['<?xml version="1.0"?>', "<ASAP_Annotations>", "<Annotations>"]
    for name, kind, group, vertices in annotations:
        parts.append(f'<Annotation Name="{name}" Type="{kind}" PartOfGroup="{group}" Color="#F4FA58"><Coordinates>')
        index = orders if orders is not None and len(orders) == len(vertices) else list(range(len(vertices)))
        for i in index:
            x, y = vertices[i]
            parts.append(f'<Coordinate Order="{i}" X="{x}" Y="{y}" />')
        parts.append("</Coordinates></Annotation>")
    parts += ["</Annotations>", "<AnnotationGroups />", "</ASAP_Annotations>"]
    return "\n".join(parts)


def square(x0: float, y0: float, side: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x0 + side, y0), (x0 + side, y0 + side), (x0, y0 + side)]


def star(cx: float, cy: float, r: float, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    angles = np.sort(rng.uniform(0, 2 * np.pi, k))
    radii = r * rng.uniform(0.4, 1.0, k)
    return np.column_stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)])


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------- real files
@pytest.mark.realdata
def test_camelyon16_asap_spline_file(shared_data: Path) -> None:
    ann = load_annotations(shared_data / "annotations" / "test_046.xml")
    assert ann.kind == "asap"
    assert isinstance(ann, VectorAnnotations)
    assert len(ann.regions) == 4
    assert {r.group for r in ann.regions} == {"_0"}
    assert ann.labels == (1,)
    assert all(r.geometry.is_valid and r.geometry.area > 0 for r in ann.regions)
    x0, y0, x1, y1 = ann.bounds_l0  # type: ignore[misc]
    assert 50_000 < x0 < x1 < 60_000 and 15_000 < y0 < y1 < 30_000
    # A rasterisation of the bounding box at 16 level-0 px per pixel has the polygons' area.
    size = (round((x1 - x0) / 16), round((y1 - y0) / 16))
    mask = ann.rasterize((x0, y0, x1, y1), size)
    pixel_area = (x1 - x0) / size[0] * (y1 - y0) / size[1]
    assert mask.sum() * pixel_area == pytest.approx(ann.area_l0(1), rel=0.05)


@pytest.mark.realdata
def test_camelyon16_annotations_on_another_slide_warn(shared_data: Path, caplog: pytest.LogCaptureFixture) -> None:
    """CAMELYON16's test_046.xml lies wholly outside the CMU slide (2220x2967 px): a warning names both files."""
    ann = load_annotations(shared_data / "annotations" / "test_046.xml")
    slide = shared_data / "slides" / "CMU-1-Small-Region.svs"
    with caplog.at_level(logging.WARNING):
        fraction = warn_outside(ann, (2220, 2967), slide)
    assert fraction == pytest.approx(1.0)
    assert "100.0% of the annotated area lies outside the slide" in caplog.text
    assert "test_046.xml" in caplog.text and "CMU-1-Small-Region.svs" in caplog.text


@pytest.mark.realdata
def test_camelyon17_geojson_file(shared_data: Path) -> None:
    ann = load_annotations(shared_data / "annotations" / "patient_004_node_4.geojson")
    assert ann.kind == "geojson"
    assert isinstance(ann, VectorAnnotations)
    assert [r.name for r in ann.regions] == ["Annotation 0", "Annotation 1", "Annotation 2"]
    assert ann.labels == (1,)  # no class: the default label
    x0, y0, x1, y1 = ann.bounds_l0  # type: ignore[misc]
    assert 10_000 < x0 < x1 < 14_000 and 75_000 < y0 < y1 < 90_000
    pts = ann.sample_points(1, 50, np.random.default_rng(0))
    assert pts.shape == (50, 2)
    assert shapely.contains_xy(ann.geometries[1], pts[:, 0], pts[:, 1]).all()


# ------------------------------------------------------------------------------------------- ASAP
def test_asap_types_groups_and_exclusion(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = asap_xml(
        [
            ("tumour", "Polygon", "_0", square(100, 100, 200)),
            ("spline", "Spline", "_1", square(400, 100, 100)),
            ("rect", "Rectangle", "Tumor", square(600, 100, 50)),
            ("hole", "Polygon", "_2", square(150, 150, 50)),
            ("dot", "Dot", "_0", [(10, 10)]),
        ]
    )
    with caplog.at_level(logging.INFO, logger="mrseg"):
        ann = load_annotations(write(tmp_path, "a.xml", text))
    assert isinstance(ann, VectorAnnotations)
    assert [r.name for r in ann.regions] == ["tumour", "spline", "rect", "hole"]
    assert [r.label for r in ann.regions] == [1, 1, 1, EXCLUDE]
    assert "Dot" in caplog.text
    assert ann.area_l0(1) == pytest.approx(200 * 200 - 50 * 50 + 100 * 100 + 50 * 50)
    mask = ann.rasterize((0, 0, 800, 400), (800, 400))
    assert mask[120, 120] == 1 and mask[175, 175] == 0 and mask[150, 450] == 1 and mask[125, 625] == 1
    assert mask[10, 10] == 0
    assert mask.sum() == pytest.approx(ann.area_l0(1))
    assert ann.bounds_l0 == (100.0, 100.0, 650.0, 300.0)


def test_asap_coordinates_sorted_by_order(tmp_path: Path) -> None:
    vertices = [tuple(v) for v in star(500, 500, 300, 12, seed=1)]
    shuffled = list(np.random.default_rng(2).permutation(12))
    a = load_annotations(write(tmp_path, "sorted.xml", asap_xml([("a", "Polygon", "_0", vertices)])))
    b = load_annotations(write(tmp_path, "shuffled.xml", asap_xml([("a", "Polygon", "_0", vertices)], shuffled)))
    assert isinstance(a, VectorAnnotations) and isinstance(b, VectorAnnotations)
    assert a.regions[0].geometry.equals(b.regions[0].geometry)
    assert a.regions[0].geometry.is_valid


def test_asap_two_point_rectangle_decimal_comma_and_label_map(tmp_path: Path) -> None:
    text = asap_xml([("r", "Rectangle", "metastasis", [(10, 20), (110, 70)])]).replace('X="10"', 'X="10,0"')
    path = write(tmp_path, "r.xml", text)
    ann = load_annotations(path, label_map={"metastasis": 2})
    assert ann.labels == (2,)
    assert ann.area_l0(2) == pytest.approx(100 * 50)
    skipped = load_annotations(path, default_label=None)
    assert skipped.labels == ()


def test_unknown_group_gets_default_label_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, "g.xml", asap_xml([("a", "Polygon", "Mystery", square(0, 0, 10))]))
    with caplog.at_level(logging.WARNING, logger="mrseg"):
        ann = load_annotations(path)
    assert ann.labels == (1,)
    assert "Mystery" in caplog.text and "g.xml" in caplog.text


@pytest.mark.parametrize(
    ("vertices", "message"),
    [
        ([(0, 0), (10, 10), (10, 0), (0, 10)], "repaired"),  # bow tie (self-intersection)
        ([(0, 0), (10, 0)], "fewer than 3"),
        ([(0, 0), (10, 0), (10, 0), (0, 0)], "fewer than 3"),  # duplicates only
        ([(0, 0), (10, 0), (float("nan"), 5), (0, 10)], "NaN"),
        ([(0, 0), (5, 5), (10, 10)], "no area"),  # collinear
    ],
)
def test_invalid_polygons_repaired_or_skipped_with_named_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, vertices: list[tuple[float, float]], message: str
) -> None:
    text = asap_xml([("good", "Polygon", "_0", square(100, 100, 10)), ("bad one", "Polygon", "_0", vertices)])
    with caplog.at_level(logging.WARNING, logger="mrseg"):
        ann = load_annotations(write(tmp_path, "bad.xml", text))
    assert message in caplog.text
    assert "'bad one'" in caplog.text and "bad.xml" in caplog.text
    assert isinstance(ann, VectorAnnotations)
    assert all(r.geometry.is_valid for r in ann.regions)
    if message == "repaired":
        assert ann.area_l0(1) == pytest.approx(100 + 50)  # two triangles of the bow tie
    else:
        assert [r.name for r in ann.regions] == ["good"]


def test_duplicate_consecutive_points_are_harmless(tmp_path: Path) -> None:
    vertices = [(0, 0), (0, 0), (10, 0), (10, 10), (10, 10), (0, 10)]
    ann = load_annotations(write(tmp_path, "d.xml", asap_xml([("d", "Polygon", "_0", vertices)])))
    assert ann.area_l0(1) == pytest.approx(100)


def test_bad_coordinate_text_skips_annotation(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = asap_xml([("x", "Polygon", "_0", square(0, 0, 10))]).replace('X="10"', 'X="ten"', 1)
    with caplog.at_level(logging.WARNING, logger="mrseg"):
        ann = load_annotations(write(tmp_path, "t.xml", text))
    assert ann.labels == ()
    assert "'ten' is not a number" in caplog.text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<ASAP_Annotations><Annotations>", "malformed XML"),
        ("<Other/>", "not an ASAP annotation file"),
        ("", "malformed XML"),
    ],
)
def test_malformed_xml_raises(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "m.xml", text)
    with pytest.raises(AnnotationError, match=message) as info:
        load_annotations(path)
    assert str(path) in str(info.value)


def test_xml_bomb_refused(tmp_path: Path) -> None:
    lol = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)]
    text = (
        f'<?xml version="1.0"?><!DOCTYPE ASAP_Annotations [{"".join(lol)}]><ASAP_Annotations>&lol9;</ASAP_Annotations>'
    )
    path = write(tmp_path, "bomb.xml", text)
    with pytest.raises(AnnotationError, match="unsafe XML") as info:
        load_annotations(path)
    assert "bomb.xml" in str(info.value)


def test_xml_external_entity_refused(tmp_path: Path) -> None:
    secret = write(tmp_path, "secret.txt", "top secret")
    text = (
        f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file://{secret}">]>'
        '<ASAP_Annotations><Annotations><Annotation Name="&xxe;" Type="Polygon" PartOfGroup="_0"/>'
        "</Annotations></ASAP_Annotations>"
    )
    with pytest.raises(AnnotationError, match="unsafe XML"):
        load_annotations(write(tmp_path, "xxe.xml", text))


def test_missing_file_and_label_map_errors(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="cannot read"):
        load_annotations(tmp_path / "nope.xml")
    path = write(tmp_path, "a.xml", asap_xml([("a", "Polygon", "_0", square(0, 0, 10))]))
    with pytest.raises(AnnotationError, match="label map"):
        load_annotations(path, label_map={"_0": 300})


# ---------------------------------------------------------------------------------------- GeoJSON
def feature(geometry: dict, cls: str | None = None, name: str | None = None) -> dict:
    props: dict = {"objectType": "annotation"}
    if cls is not None:
        props["classification"] = {"name": cls, "color": [255, 0, 0]}
    if name is not None:
        props["name"] = name
    return {"type": "Feature", "geometry": geometry, "properties": props}


def poly(shell: list, *holes: list) -> dict:
    return {"type": "Polygon", "coordinates": [[list(p) for p in ring] + [list(ring[0])] for ring in (shell, *holes)]}


def test_geojson_holes_multipolygon_classes_and_exclusion(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    multi = {
        "type": "MultiPolygon",
        "coordinates": [poly(square(300, 0, 50))["coordinates"], poly(square(400, 0, 50))["coordinates"]],
    }
    fc = {
        "type": "FeatureCollection",
        "features": [
            feature(poly(square(0, 0, 100), square(25, 25, 50)), "Tumor", "with hole"),
            feature(multi, "Tumor", "multi"),
            feature(poly(square(300, 0, 20)), "Exclusion", "cut"),
            feature(poly(square(0, 200, 50)), "Stroma", "stroma"),
            feature(poly(square(100, 200, 50)), None, "no class"),
            feature({"type": "Point", "coordinates": [5, 5]}, "Tumor", "point"),
            feature(poly(square(200, 200, 50)), "Lymphocytes", "lymph"),
        ],
    }
    path = write(tmp_path, "a.geojson", json.dumps(fc))
    with caplog.at_level(logging.INFO, logger="mrseg"):
        ann = load_annotations(path, label_map={"tumor": 1, "exclusion": EXCLUDE, "stroma": 2}, default_label=3)
    assert "Lymphocytes" in caplog.text and "Point" in caplog.text
    assert isinstance(ann, VectorAnnotations)
    assert ann.labels == (1, 2, 3)
    assert ann.area_l0(1) == pytest.approx(100 * 100 - 50 * 50 + 2 * 50 * 50 - 20 * 20)
    assert ann.area_l0(2) == pytest.approx(2500)
    assert ann.area_l0(3) == pytest.approx(5000)  # unknown and missing class -> default
    mask = ann.rasterize((0, 0, 500, 300), (500, 300))
    assert mask[10, 10] == 1 and mask[50, 50] == 0  # hole
    assert mask[10, 310] == 0 and mask[30, 310] == 1  # exclusion cut
    assert mask[10, 410] == 1 and mask[225, 25] == 2 and mask[225, 125] == 3
    for label in ann.labels:
        assert (mask == label).sum() == pytest.approx(ann.area_l0(label))


@pytest.mark.parametrize(
    "document",
    [
        feature(poly(square(0, 0, 10))),
        [feature(poly(square(0, 0, 10)))],
        [poly(square(0, 0, 10))],
        poly(square(0, 0, 10)),
        {"type": "GeometryCollection", "geometries": [poly(square(0, 0, 10))]},
    ],
    ids=["feature", "feature-list", "geometry-list", "geometry", "geometry-collection"],
)
def test_geojson_document_shapes(tmp_path: Path, document: object) -> None:
    ann = load_annotations(write(tmp_path, "d.json", json.dumps(document)))
    assert ann.labels == (1,) and ann.area_l0(1) == pytest.approx(100)


def test_geojson_class_from_name_and_string_classification(tmp_path: Path) -> None:
    features = [
        {"type": "Feature", "geometry": poly(square(0, 0, 10)), "properties": {"name": "Exclusion"}},
        {"type": "Feature", "geometry": poly(square(20, 0, 10)), "properties": {"classification": "Tumor"}},
    ]
    ann = load_annotations(write(tmp_path, "n.geojson", json.dumps(features)))
    assert isinstance(ann, VectorAnnotations)
    assert [r.label for r in ann.regions] == [EXCLUDE, 1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "malformed JSON"),
        ('{"type": "FeatureCollection"}', "without a 'features' list"),
        ('{"hello": 1}', "not GeoJSON"),
        ("[1, 2]", "not a GeoJSON object"),
        ('{"type": "Feature", "geometry": null, "properties": 3}', "non-object 'properties'"),
    ],
)
def test_malformed_geojson_raises(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "bad.geojson", text)
    with pytest.raises(AnnotationError, match=message) as info:
        load_annotations(path)
    assert "bad.geojson" in str(info.value)


def test_geojson_bad_features_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    features = [
        feature({"type": "Polygon", "coordinates": "oops"}, name="string coords"),
        feature({"type": "Polygon", "coordinates": [[["a", "b"], [1, 2], [3, 4]]]}, name="text coords"),
        feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}, name="two points"),
        feature(poly(square(0, 0, 10), [(2, 2), (3, 3)]), name="bad hole"),
    ]
    with caplog.at_level(logging.WARNING, logger="mrseg"):
        ann = load_annotations(write(tmp_path, "f.geojson", json.dumps(features)))
    for name in ("string coords", "text coords", "two points", "bad hole"):
        assert name in caplog.text
    assert ann.area_l0(1) == pytest.approx(100)  # only 'bad hole' survives, without its hole


def test_sniff_format(tmp_path: Path) -> None:
    assert sniff_format(write(tmp_path, "x.txt", "  <ASAP_Annotations/>")) == "asap"
    assert sniff_format(write(tmp_path, "x.dat", '\n{"type": "Feature"}')) == "geojson"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "m.bin", format="PNG")
    assert sniff_format(tmp_path / "m.bin") == "mask"
    with pytest.raises(AnnotationError, match="unknown annotation format"):
        sniff_format(write(tmp_path, "empty.dat", ""))


# ---------------------------------------------------------------------------------- rasterisation
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rasterize_agrees_with_skimage_polygon(seed: int) -> None:
    vertices = star(1000.3, 2000.7, 180.0, 40, seed)
    ann = VectorAnnotations([Region(Polygon(vertices).buffer(0), 1, "star")])
    box = (800.0, 1800.0, 1200.0, 2200.0)
    ours = ann.rasterize(box, (400, 400)) == 1
    # skimage fills pixels whose integer (row, col) lies inside; our centre of pixel (u, v) is box + 0.5.
    rr, cc = sk_polygon(vertices[:, 1] - box[1] - 0.5, vertices[:, 0] - box[0] - 0.5, shape=(400, 400))
    ref = np.zeros((400, 400), dtype=bool)
    ref[rr, cc] = True
    differ = np.argwhere(ours != ref)
    assert ours.sum() > 1000
    assert len(differ) < 0.01 * ours.sum()
    boundary = Polygon(vertices).exterior
    for v, u in differ:
        assert boundary.distance(Point(box[0] + u + 0.5, box[1] + v + 0.5)) < 1.0


def test_rasterize_consistent_across_scales_and_boxes() -> None:
    geom = Polygon(star(500.2, 400.9, 350.0, 30, 5), holes=[star(500.2, 400.9, 80.0, 12, 6)]).buffer(0)
    ann = VectorAnnotations([Region(geom, 1, "a"), Region(Point(600.1, 420.3).buffer(60.0), 2, "b")])
    fine = ann.rasterize((0, 0, 999, 900), (999, 900))
    # Every 3rd fine pixel centre is a centre of the 3x coarser grid: identical samples.
    coarse = ann.rasterize((0, 0, 999, 900), (333, 300))
    np.testing.assert_array_equal(coarse, fine[1::3, 1::3])
    # A sub-box on the same grid is a crop; boxes partly outside the annotations are fine.
    np.testing.assert_array_equal(ann.rasterize((100, 50, 400, 250), (300, 200)), fine[50:250, 100:400])
    outside = ann.rasterize((-200, -100, 100, 100), (300, 200))
    np.testing.assert_array_equal(outside[100:, 200:], fine[:100, :100])
    assert not outside[:100].any() and not outside[:, :200].any()
    assert rasterize(ann, (5000, 5000, 5100, 5100), (10, 10)).sum() == 0
    assert set(np.unique(fine)) == {0, 1, 2}


def test_precedence_higher_label_and_exclusion_win() -> None:
    ann = VectorAnnotations(
        [
            Region(Polygon(square(0, 0, 100)), 1, "one"),
            Region(Polygon(square(50, 0, 100)), 2, "two"),
            Region(Polygon(square(90, 0, 20)), EXCLUDE, "cut"),
        ]
    )
    mask = ann.rasterize((0, 0, 200, 100), (200, 100))
    assert mask[50, 25] == 1 and mask[50, 75] == 2 and mask[10, 100] == 0 and mask[50, 140] == 2
    assert ann.area_l0(1) == pytest.approx(50 * 100)
    assert ann.area_l0(2) == pytest.approx(100 * 100 - 20 * 20)
    assert ann.labels == (1, 2)
    stats = {s.label: s for s in ann.label_stats()}
    assert stats[EXCLUDE].count == 1 and stats[2].count == 1


def test_rasterize_huge_polygon_small_box_without_full_mask() -> None:
    big = Polygon([(0, 0), (100_000, 0), (100_000, 200_000), (0, 200_000)])
    ann = VectorAnnotations([Region(big, 1, "whole slide")])
    mask = ann.rasterize((99_990, 199_990, 100_010, 200_010), (40, 40))  # sx = 0.5
    assert mask[:20, :20].all() and not mask[20:].any() and not mask[:, 20:].any()
    assert ann.rasterize((0, 0, 100_000, 200_000), (100, 200)).all()


@pytest.mark.parametrize(
    ("box", "size"), [((0, 0, 0, 10), (5, 5)), ((0, 0, 10, 10), (0, 5)), ((0, 0, 10, 10), (2.5, 2))]
)
def test_rasterize_rejects_bad_requests(box: tuple, size: tuple) -> None:
    ann = VectorAnnotations([Region(Polygon(square(0, 0, 10)), 1, "a")])
    with pytest.raises(ValueError):
        ann.rasterize(box, size)


def test_sample_points_uniform_by_area() -> None:
    ann = VectorAnnotations(
        [Region(Polygon(square(0, 0, 100)), 1, "big"), Region(Point(300, 300).buffer(30), 1, "small")]
    )
    pts = ann.sample_points(1, 4000, np.random.default_rng(0))
    assert pts.shape == (4000, 2)
    assert shapely.contains_xy(ann.geometries[1], pts[:, 0], pts[:, 1]).all()
    in_big = (pts[:, 0] < 150).mean()
    expected = 10_000 / ann.area_l0(1)
    assert in_big == pytest.approx(expected, abs=0.03)
    with pytest.raises(AnnotationError, match="no region with label 2"):
        ann.sample_points(2, 1, np.random.default_rng(0))
    assert ann.sample_points(1, 0, np.random.default_rng(0)).shape == (0, 2)


# ------------------------------------------------------------------------------------ mask images
@pytest.fixture()
def label_image() -> np.ndarray:
    """A 600 x 400 (h x w) label image: label 1 rectangle and label 2 disc."""
    image = np.zeros((600, 400), dtype=np.uint8)
    image[100:300, 50:200] = 1
    yy, xx = np.mgrid[:600, :400]
    image[(yy - 450) ** 2 + (xx - 300) ** 2 < 60**2] = 2
    return image


def test_pyramidal_tiff_mask_at_another_scale(tmp_path: Path, label_image: np.ndarray) -> None:
    path = write_pyramidal_tiff(tmp_path / "mask.tif", label_image, 2.0, compression="zlib", downsample="nearest")
    slide_dims = (1600, 2400)  # the mask is the slide at downsample 4
    with load_annotations(path, slide_dimensions=slide_dims) as ann:
        assert isinstance(ann, MaskAnnotations)
        assert ann.labels == (1, 2)
        assert ann.downsamples[0] == (4.0, 4.0)
        assert ann.bounds_l0 == (200.0, 400.0, 1440.0, 2040.0)
        assert ann.area_l0(1) == pytest.approx(200 * 150 * 16)
        # At the mask's own scale the request returns the mask exactly.
        np.testing.assert_array_equal(ann.rasterize((0, 0, 1600, 2400), (400, 600)), label_image)
        # At level-0 scale (sx = 1): nearest upsampling.
        window = ann.rasterize((180, 380, 280, 480), (100, 100))
        np.testing.assert_array_equal(window, np.kron(label_image[95:120, 45:70], np.ones((4, 4), np.uint8)))
        # Coarse request uses a reduced level and still agrees with the vector rectangle.
        vector = VectorAnnotations([Region(shapely.box(200, 400, 800, 1200), 1, "r")])
        coarse = ann.rasterize((0, 0, 1600, 2400), (100, 150)) == 1
        expected = vector.rasterize((0, 0, 1600, 2400), (100, 150)) == 1
        assert (coarse != expected).sum() <= 2 * (50 + 38)  # boundary pixels only
        # Partly outside the slide: zeros there.
        out = ann.rasterize((1500, 2300, 1700, 2500), (20, 20))
        assert not out[10:].any() and not out[:, 10:].any()
        pts = ann.sample_points(2, 200, np.random.default_rng(1))
        assert (np.hypot(pts[:, 0] / 4 - 300, pts[:, 1] / 4 - 450) < 61).all()


def test_mask_scale_snaps_to_integer_downsample(tmp_path: Path, label_image: np.ndarray) -> None:
    path = write_pyramidal_tiff(tmp_path / "m.tif", label_image, 2.0, compression="zlib", downsample="nearest")
    with load_annotations(path, slide_dimensions=(1598, 2397)) as ann:
        assert isinstance(ann, MaskAnnotations)
        assert ann.downsamples[0] == (4.0, 4.0)
        assert ann.downsamples[1] == (8.0, 8.0)


def test_png_mask_with_value_map(tmp_path: Path, label_image: np.ndarray) -> None:
    Image.fromarray(label_image * 127).save(tmp_path / "m.png")  # values 0, 127, 254
    ann = load_annotations(tmp_path / "m.png", label_map={"127": 1, "254": 2})
    assert ann.labels == (1, 2)
    np.testing.assert_array_equal(ann.rasterize((0, 0, 400, 600), (400, 600)), label_image)
    assert ann.label_stats()[0].count is None


def test_corrupt_mask_raises(tmp_path: Path) -> None:
    path = tmp_path / "bad.tif"
    path.write_bytes(b"II*\x00garbage")
    with pytest.raises(AnnotationError, match=r"bad\.tif"):
        load_annotations(path)


def test_annotations_pickle_for_worker_processes(tmp_path: Path, label_image: np.ndarray) -> None:
    import pickle

    path = write_pyramidal_tiff(tmp_path / "m.tif", label_image, 2.0, compression="zlib", downsample="nearest")
    request = ((100.0, 300.0, 1500.0, 2300.0), (70, 100))
    with load_annotations(path, slide_dimensions=(1600, 2400)) as mask:
        expected = mask.rasterize(*request)
        clone = pickle.loads(pickle.dumps(mask))
    np.testing.assert_array_equal(clone.rasterize(*request), expected)  # reopened after the original closed
    clone.close()
    vector = VectorAnnotations([Region(Polygon(square(0, 0, 50)), 1, "a")])
    before = vector.rasterize((0, 0, 100, 100), (10, 10))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(vector)).rasterize((0, 0, 100, 100), (10, 10)), before)


def test_mask_label_map_must_use_pixel_values(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(AnnotationError, match="pixel values"):
        load_annotations(tmp_path / "m.png", label_map={"tumor": 1})


def test_rasterize_aligned_with_slide_read_box(rgb_tiff: Callable[..., Path]) -> None:
    from mrseg.wsi.slide import Slide

    image = np.full((512, 512, 3), 255, np.uint8)
    image[150:350, 100:300] = 0  # level-0 pixels whose centres lie in the square below
    ann = VectorAnnotations([Region(shapely.box(100, 150, 300, 350), 1, "square")])
    with Slide.open(rgb_tiff(image, mpp=0.5)) as slide:
        for box, size in [((50.5, 80.25, 450.5, 480.25), (200, 200)), ((90.0, 140.0, 310.0, 360.0), (440, 440))]:
            pixels = slide.read_box(box, size).mean(axis=2)
            labels = ann.rasterize(box, size)
            dark, light = pixels < 64, pixels > 192
            assert (labels[dark] == 1).all() and (labels[light] == 0).all()
            perimeter_px = 2 * 200 * (size[0] / (box[2] - box[0]) + size[1] / (box[3] - box[1]))
            assert (~(dark | light)).sum() <= 2.5 * perimeter_px  # a band of blurred edge pixels only
