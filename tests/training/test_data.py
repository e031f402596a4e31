"""Data sets: manifests, CAMELYON16 folders, up-front validation, split by slide."""

from __future__ import annotations

from pathlib import Path

import pytest

from mrseg.core.errors import DataError
from mrseg.core.label_spec import LabelSpec
from mrseg.core.tissue_spec import TissueSettings
from mrseg.training.data import exclude_records, prepare, split_records
from mrseg.wsi.manifest import SlideRecord, discover, read_manifest, scan_camelyon16
from training_data import MULTICLASS, SIZE, asap_xml, make_dataset, make_multiclass_dataset, make_slide


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"), 4)


def test_manifest_csv_and_yaml(tmp_path: Path, dataset: Path) -> None:
    recs = read_manifest(dataset)
    assert [r.name for r in recs] == [f"slide_{i:02d}" for i in range(4)]
    assert recs[0].annotation == (dataset.parent / "annotations/slide_00.xml").resolve()
    assert recs[1].annotation is None and recs[0].slide.is_absolute()
    assert discover(dataset.parent) == recs  # synth-style folder with manifest.csv
    y = tmp_path / "m.yaml"
    y.write_text(f"slides:\n  - slide: {recs[0].slide}\n    split: valid\n    mpp: 0.25\n")
    (r,) = read_manifest(y)
    assert r.split == "val" and r.mpp == 0.25


def test_manifest_problems_reported_together(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    m = tmp_path / "m.csv"
    m.write_text("slide,split,mpp,colour\na.tif,sometimes,x,red\n,train,,\n")
    with pytest.raises(DataError) as info:
        read_manifest(m)
    text = str(info.value)
    for needle in ("sometimes", "'x' is not a number", "no `slide`", str(m)):
        assert needle in text
    assert "unknown column(s) ['colour']" in caplog.text


def test_camelyon16_folder(tmp_path: Path) -> None:
    root = tmp_path / "CAMELYON16" / "training"
    for kind in ("normal", "tumor"):
        (root / kind).mkdir(parents=True)
    (root / "lesion_annotations").mkdir()
    make_slide(root / "normal" / "normal_001.tif", 0, False)
    poly = make_slide(root / "tumor" / "tumor_001.tif", 1, True)
    make_slide(root / "tumor" / "tumor_010.tif", 2, True)
    assert poly is not None
    (root / "lesion_annotations" / "tumor_001.xml").write_text(asap_xml([poly]))
    recs = scan_camelyon16(tmp_path / "CAMELYON16")
    assert [r.name for r in recs] == ["normal_001", "tumor_001", "tumor_010"]
    assert recs[0].annotation is None and recs[1].annotation is not None
    # tumor_010 has no XML: validation names it; excluding it (as the recipe does) fixes the set.
    with pytest.raises(DataError, match=r"tumor_010\.tif: annotation .*tumor_010\.xml not found"):
        prepare(recs)
    kept = exclude_records(recs, ["tumor_010"])
    assert len(prepare(kept)) == 2
    with pytest.raises(DataError, match="not a data set"):
        discover(tmp_path)


def test_validation_reports_every_problem(tmp_path: Path, dataset: Path) -> None:
    recs = read_manifest(dataset)
    bad_slide = tmp_path / "broken.tif"
    bad_slide.write_bytes(b"not a tiff at all")
    bad_xml = tmp_path / "bad.xml"
    bad_xml.write_text("<ASAP_Annotations><oops")
    records = [
        *recs,
        SlideRecord(tmp_path / "missing.tif"),
        SlideRecord(bad_slide),
        SlideRecord(recs[0].slide.with_name("slide_00.tif"), annotation=bad_xml),
    ]
    with pytest.raises(DataError) as info:
        prepare(records)
    text = str(info.value)
    assert "3 problems" in text
    assert "missing.tif" in text and "broken.tif" in text and "bad.xml" in text


def test_split_by_slide_seeded() -> None:
    recs = [SlideRecord(Path(f"/s/{i}.tif"), annotation=Path(f"/a/{i}.xml") if i % 2 else None) for i in range(10)]
    tr, va = split_records(recs, val_fraction=0.2, seed=1)
    assert len(va) == 2 and len(tr) == 8
    assert not {r.name for r in tr} & {r.name for r in va}
    assert any(r.annotation for r in va) and any(r.annotation is None for r in va)  # both kinds held out
    assert split_records(recs, val_fraction=0.2, seed=1) == (tr, va)
    assert split_records(recs, val_fraction=0.2, seed=2) != (tr, va)
    marked = [SlideRecord(Path(f"/s/{i}.tif"), split=s) for i, s in enumerate(["train", "val", "test", "train"])]
    tr, va = split_records(marked)
    assert [r.name for r in tr] == ["0", "3"] and [r.name for r in va] == ["1"]
    with pytest.raises(DataError, match="manifest"):
        split_records(recs, mode="manifest")
    with pytest.raises(DataError, match="at least 2"):
        split_records(recs[:1])


def test_split_keeps_its_draws() -> None:
    """The random split is a fixed function of the records and the seed (runs started earlier resume unchanged)."""
    recs = [SlideRecord(Path(f"/s/{i}.tif"), annotation=Path(f"/a/{i}.xml") if i % 3 else None) for i in range(7)]
    tr, va = split_records(recs, val_fraction=0.3, seed=4)
    assert [r.name for r in va] == ["3", "5"] and len(tr) == 5  # as before the split was refactored
    assert split_records(recs, val_fraction=0.0)[1] == []
    assert len(split_records(recs[:2], val_fraction=0.9)[0]) == 1  # never all slides held out


def test_prepare_uses_the_tissue_settings(dataset: Path) -> None:
    coarse = prepare(read_manifest(dataset)[:1], tissue=TissueSettings(mpp=16.0))[0]
    fine = prepare(read_manifest(dataset)[:1], tissue=TissueSettings(mpp=8.0))[0]
    assert coarse.tissue_shape == (SIZE // 16, SIZE // 16) and fine.tissue_shape == (SIZE // 8, SIZE // 8)


def test_binary_default_keeps_unknown_groups_as_tumour(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    manifest = make_multiclass_dataset(tmp_path, 1)  # groups tumour, lymphoid, other
    (info,) = prepare(read_manifest(manifest))  # the binary CAMELYON spec: today's behaviour
    assert info.positive_labels == (1,)  # 'tumour' is known; 'lymphoid' and 'other' default to 1 ...
    assert "'lymphoid' is not in the label map; using default label 1" in caplog.text  # ... with a warning


def test_multiclass_labels_are_checked_before_training(tmp_path: Path) -> None:
    xml = make_multiclass_dataset(tmp_path / "xml", 2)
    assert [p.positive_labels for p in prepare(read_manifest(xml), labels=MULTICLASS)] == [(1, 2, 3)] * 2
    masks = make_multiclass_dataset(tmp_path / "masks", 1, masks=True)
    assert prepare(read_manifest(masks), labels=MULTICLASS)[0].positive_labels == (1, 2, 3)
    three = LabelSpec(classes=("background", "tumour", "lymphoid"), label_map={"tumour": 1, "lymphoid": 2})
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a slide")
    records = [*read_manifest(xml), *read_manifest(masks), SlideRecord(broken)]
    with pytest.raises(DataError) as info:
        prepare(records, labels=three)
    text = str(info.value)
    assert text.startswith("5 problems in the data set:")  # collected with the other problems:
    assert "xml/annotations/slide_00.xml: annotation group 'other' is not in labels.label_map" in text
    assert "xml/annotations/slide_01.xml: annotation group 'other' is not in labels.label_map" in text
    assert "masks/annotations/slide_00.tif: label 3 is not a class of the label spec" in text
    assert "slide name 'slide_00' also used by" in text and "broken.tif" in text
