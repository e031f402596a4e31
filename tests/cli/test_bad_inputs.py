"""The bad-input campaign, table-driven, through the real CLI (issue 12: nothing lost, nothing silent).

Every case runs ``mrseg -q <command> ...`` in-process (typer's CliRunner) against small files
generated once for the module (:func:`files`), in a fresh working directory, and asserts:

- the exit code (1 for bad input; 0 for the cases that only warn);
- for errors: exactly one line on stderr, ``error: ...``, naming the file (or option) and the reason,
  and no traceback (the command raised nothing but a clean exit);
- for warnings: a ``warning``-level line on stderr saying what is wrong;
- that no file changed anywhere except the command's own outputs (the module's files and the case's
  folder are hashed before and after).

``{F}`` in a command line is the folder of the module's files, ``{T}`` the case's own folder (also
its working directory). Cases that need files of their own build them with ``setup``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from mrseg.cli import app
from mrseg.cli.errors import THIRD_PARTY_LOGGERS
from mrseg.core.input_spec import InputSpec
from mrseg.inference.runner import run_slide
from mrseg.inference.settings import PredictSettings
from mrseg.models import create_model
from mrseg.models.checkpoint import make_checkpoint, save_checkpoint
from mrseg.wsi.tiff import write_pyramidal_tiff
from training_data import asap_xml, make_dataset

runner = CliRunner()

SLIDE_PX = (320, 256)

#: Advisory lock files (``.<output>.lock``, :mod:`mrseg.core.locks`) are left in place by design (a
#: flock file must not be deleted while another process may wait on it), and so are folders holding
#: only them: the state comparison ignores both.
LOCK_SUFFIX = ".lock"


class Evil:
    """A pickle that would run code when loaded without ``weights_only``."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pwned",))


def _tiff_with_mpp(path: Path, mpp: float, shape: tuple[int, int] = (256, 256)) -> Path:
    image = np.full((*shape, 3), 200, np.uint8)
    kwargs: dict[str, object] = {}
    if mpp > 0:
        kwargs = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
    tifffile.imwrite(path, image, tile=(128, 128), compression="zlib", photometric="rgb", **kwargs)
    return path


def _declare_size(path: Path, width: int, height: int) -> Path:
    """Rewrite the TIFF's ImageWidth/ImageLength tags: a small file that declares a huge image."""
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(width)
        tif.pages[0].tags["ImageLength"].overwrite(height)
    return path


def _feature(ring: list[list[float]], name: str = "tumor") -> dict[str, object]:
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"classification": {"name": name}},
    }


def _square(x0: float, y0: float, side: float) -> list[list[float]]:
    return [[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side], [x0, y0]]


def _collection(*features: dict[str, object]) -> str:
    return json.dumps({"type": "FeatureCollection", "features": list(features)})


def _checkpoints(folder: Path) -> None:
    torch.manual_seed(0)
    model = create_model("unet", mpps=[1.0], width=4, depth=2)
    save_checkpoint(folder / "ckpt.pt", make_checkpoint(model, InputSpec((1.0,), 32)))
    raw = torch.load(folder / "ckpt.pt", weights_only=True)
    wider = create_model("unet", mpps=[1.0], width=8, depth=2)
    torch.save({**raw, "state_dict": wider.state_dict()}, folder / "mismatch.pt")
    torch.save({"format": raw["format"], "evil": Evil()}, folder / "evil.pt")
    (folder / "pickle.pt").write_bytes(pickle.dumps(Evil()))
    (folder / "garbage.pt").write_bytes(os.urandom(2048))
    (folder / "truncated.pt").write_bytes((folder / "ckpt.pt").read_bytes()[:3000])
    torch.save({"weights": torch.zeros(3)}, folder / "foreign.pt")


def _slides(folder: Path) -> None:
    rng = np.random.default_rng(0)
    image = np.full((SLIDE_PX[1], SLIDE_PX[0], 3), 255, np.uint8)
    t = rng.integers(0, 60, (150, 200, 1))
    image[50:200, 60:260] = np.concatenate([210 - t, 110 - t, 190 - t], axis=2).astype(np.uint8)
    write_pyramidal_tiff(folder / "slide.tif", image, 1.0, compression="zlib", min_size=64)
    _tiff_with_mpp(folder / "nompp.tif", 0)
    _tiff_with_mpp(folder / "mpp_1e6.tif", 1e6)
    _tiff_with_mpp(folder / "mpp_1e-5.tif", 1e-5)
    _declare_size(_tiff_with_mpp(folder / "huge.tif", 0.5), 2_000_000, 2_000_000)
    (folder / "truncated.tif").write_bytes((folder / "slide.tif").read_bytes()[:1500])
    (folder / "empty.tif").write_bytes(b"")
    (folder / "text.tif").write_text("not a slide\n")
    (folder / "notes.txt").write_text("hello\n")
    (folder / "adir").mkdir()
    (folder / "adir" / "inside.txt").write_text("keep\n")


def _annotations(folder: Path) -> None:
    deep: object = [[0, 0], [1, 0], [1, 1], [0, 0]]
    for _ in range(500):
        deep = [deep]
    (folder / "deep.geojson").write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, '
        f'"geometry": {{"type": "Polygon", "coordinates": {json.dumps(deep)}}}}}]}}'
    )
    (folder / "broken.geojson").write_text('{"type": "FeatureCollection", "features": [')
    (folder / "latin1.geojson").write_bytes(
        json.dumps(
            {"type": "FeatureCollection", "features": [_feature(_square(0, 0, 10), "tumeur é")]}, ensure_ascii=False
        ).encode("latin-1")
    )
    (folder / "strings.geojson").write_text(_collection(_feature([["a", "b"], ["c", "d"], ["e", "f"], ["a", "b"]])))
    (folder / "far.geojson").write_text(_collection(_feature(_square(1e9, 1e9, 50))))
    (folder / "vast.geojson").write_text(_collection(_feature(_square(-1e12, -1e12, 2e12))))
    (folder / "half.geojson").write_text(_collection(_feature(_square(160, 64, 320))))
    (folder / "laughs.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        "<ASAP_Annotations>&lol2;</ASAP_Annotations>"
    )
    (folder / "xxe.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        "<ASAP_Annotations>&xxe;</ASAP_Annotations>"
    )
    (folder / "garbage.xml").write_bytes(os.urandom(512))
    (folder / "unsupported.txt").write_text("1,2,3\n")
    (folder / "adir.geojson").mkdir()


def _predictions(folder: Path) -> None:
    """A real prediction of ``slide.tif``, and copies with a shrunken, a truncated and a foreign map."""
    run_slide(folder / "ckpt.pt", folder / "slide.tif", folder / "pred", PredictSettings(device="cpu"))
    record = json.loads((folder / "pred" / "slide.json").read_text())
    map_name = record["outputs"]["map"]
    for variant in ("pred_small", "pred_truncated"):
        shutil.copytree(folder / "pred", folder / variant)
    small = folder / "pred_small" / map_name
    small.unlink()
    tifffile.imwrite(small, np.zeros((10, 10), np.uint8), photometric="minisblack")
    truncated = folder / "pred_truncated" / map_name
    data = (folder / "pred" / map_name).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    truth = folder / "truth"
    truth.mkdir()
    (truth / "slide.geojson").write_text(_collection(_feature(_square(80, 60, 60))))
    bad_mask = folder / "truth_mask"
    bad_mask.mkdir()
    tifffile.imwrite(bad_mask / "slide_mask.tif", np.zeros((50, 70), np.uint8), photometric="minisblack")
    (folder / "foreign_out").mkdir()
    (folder / "foreign_out" / "metrics.csv").write_text("epoch,my_own_numbers\n1,2\n")


def _training_data(folder: Path) -> None:
    make_dataset(folder / "data", 3, splits=["train", "train", "val"])
    outside = folder / "data_outside"
    shutil.copytree(folder / "data", outside)
    far = np.array([[1e7, 1e7], [1e7 + 50, 1e7], [1e7 + 50, 1e7 + 50], [1e7, 1e7 + 50]])
    annotation = next(iter(sorted((outside / "annotations").glob("*.xml"))))
    annotation.write_text(asap_xml([far]))
    (folder / "bad.yaml").write_text("model: [unclosed\n")
    (folder / "run_taken").mkdir()
    (folder / "run_taken" / "metrics.csv").write_text("epoch,mine\n")


@pytest.fixture(autouse=True)
def _torch_global_state() -> Iterator[None]:
    """Train cases switch on deterministic algorithms for their run; later tests of the session must not see it."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    yield
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's input files (never changed by any case)."""
    folder = tmp_path_factory.mktemp("campaign")
    torch.set_num_threads(1)
    _checkpoints(folder)
    _slides(folder)
    _annotations(folder)
    _predictions(folder)
    _training_data(folder)
    return folder


def _tree_state(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, tuple[int, str]]:
    """``{relative path: (size, sha1)}`` of every file and non-empty folder under ``root`` (symlinks not followed)."""
    state: dict[str, tuple[int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        for name in filenames:
            path = here / name
            if path in skip or name.endswith(LOCK_SUFFIX):
                continue
            if path.is_symlink():
                state[str(path.relative_to(root))] = (0, "symlink:" + os.readlink(path))
                continue
            data = path.read_bytes()
            state[str(path.relative_to(root))] = (len(data), hashlib.sha1(data).hexdigest())
        for name in dirnames:
            if any(not f.name.endswith(LOCK_SUFFIX) for f in (here / name).iterdir()):
                state.setdefault(str((here / name).relative_to(root)) + "/", (0, "dir"))
    return state


def _mkdir_keep(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "keep.txt").write_text("keep\n")
    return path


def _foreign_record(tmp: Path) -> None:
    _mkdir_keep(tmp / "out")
    (tmp / "out" / "slide.json").write_text('{"mine": 1}')


def _symlinked_keep(tmp: Path) -> None:
    _mkdir_keep(tmp / "real")
    (tmp / "link").symlink_to(tmp / "real", target_is_directory=True)


@dataclass(frozen=True)
class Case:
    """One bad input: the command line, the expected exit code and what its one line must say."""

    id: str
    args: str
    match: str
    code: int = 1
    names: str | None = None  # must appear in the message (default: the first {F}/ or {T}/ name)
    outputs: tuple[str, ...] = ()  # paths (relative to {T}) the command may write
    setup: Callable[[Path], object] | None = field(default=None, compare=False)
    cwd: str = ""  # working directory relative to {T}


CK = "{F}/ckpt.pt"
S = "{F}/slide.tif"
P = f"predict {CK} {S} --out {{T}}/out"
E = "evaluate --truth {F}/truth --out {T}/report"
MODELS = "--config synthetic_unet --data {F}/data --out {T}/run"
TRAIN = f"train {MODELS} --device cpu"

CASES: list[Case] = [
    # info: slides that are not slides, mpp that cannot be right
    Case("info-missing", "info {F}/nothing.svs", "not found|no such file"),
    Case("info-directory", "info {F}/adir", "is a directory"),
    Case("info-text", "info {F}/text.tif", "not a readable slide"),
    Case("info-empty", "info {F}/empty.tif", "not a readable slide|empty"),
    Case("info-truncated", "info {F}/truncated.tif", "not a readable slide|cannot read|truncated"),
    Case("predict-no-mpp", "predict {F}/ckpt.pt {F}/nompp.tif --out {T}/out", "--slide-mpp", names="nompp.tif"),
    Case("info-mpp-1e6-metadata", "info {F}/mpp_1e6.tif", r"1e\+06.*--slide-mpp"),
    Case("info-mpp-1e-5-metadata", "info {F}/mpp_1e-5.tif", r"1e-05.*--slide-mpp"),
    Case("info-slide-mpp-1e6", f"info {S} --slide-mpp 1e6", r"--slide-mpp.*1e\+06", names="--slide-mpp"),
    Case("info-slide-mpp-1e-5", f"info {S} --slide-mpp 1e-5", "--slide-mpp.*1e-05", names="--slide-mpp"),
    Case("info-slide-mpp-zero", f"info {S} --slide-mpp 0", "--slide-mpp", names="--slide-mpp"),
    Case("info-slide-mpp-nan", f"info {S} --slide-mpp nan", "--slide-mpp", names="--slide-mpp"),
    Case("info-backend", f"info {S} --backend nope", "unknown backend", names="nope"),
    # patch: sizes that allocate what the machine does not have, outputs that are not files
    Case(
        "patch-size-huge",
        f"patch {S} --center 100 100 --size 100000 --out {{T}}/p.png",
        "100000x100000",
        names="100000",
    ),
    Case("patch-mpps-huge", f"patch {S} --center 100 100 --mpps 1e5 --out {{T}}/p.png", "GiB", names="slide.tif"),
    Case("patch-size-zero", f"patch {S} --center 100 100 --size 0 --out {{T}}/p.png", "size", names="size"),
    Case("patch-center-nan", f"patch {S} --center nan 1 --out {{T}}/p.png", "--center", names="--center"),
    Case("patch-mpps-order", f"patch {S} --center 9 9 --mpps 2 1 --out {{T}}/p.png", "--mpps", names="--mpps"),
    Case("patch-mpps-text", f"patch {S} --center 9 9 --mpps 1 x --out {{T}}/p.png", "--mpps", names="--mpps"),
    Case(
        "patch-out-is-dir",
        f"patch {S} --center 100 100 --out {{T}}/d",
        "is a directory",
        setup=lambda t: _mkdir_keep(t / "d"),
    ),
    Case(
        "patch-out-not-dir",
        f"patch {S} --center 100 100 --out {{T}}/file.txt/p.png",
        "not a directory",
        names="file.txt",
        setup=lambda t: (t / "file.txt").write_text("x"),
    ),
    Case("patch-out-is-slide", "patch {T}/s.tif --center 9 9 --out {T}/s.tif", "input"),
    Case(
        "patch-out-exists",
        f"patch {S} --center 100 100 --out {{T}}/p.png",
        "exists; pass --overwrite",
        names="p.png",
        setup=lambda t: (t / "p.png").write_bytes(b"keep"),
    ),
    Case(
        "patch-center-outside", f"patch {S} --center 5000 -40 --out {{T}}/p.png", "outside", code=0, outputs=("p.png",)
    ),
    # annotations: malformed, hostile and out-of-slide files
    Case("ann-missing", "annotations {F}/nothing.geojson", "not found|No such file"),
    Case("ann-deep", "annotations {F}/deep.geojson", "nest|deep"),
    Case("ann-broken-json", "annotations {F}/broken.geojson", "JSON|json"),
    Case("ann-latin1", "annotations {F}/latin1.geojson", "UTF-8|utf-8|decode"),
    Case("ann-strings", "annotations {F}/strings.geojson", "coordinat"),
    Case("ann-laughs", "annotations {F}/laughs.xml", "entit|DTD|unsafe"),
    Case("ann-xxe", "annotations {F}/xxe.xml", "entit|DTD|unsafe"),
    Case("ann-garbage-xml", "annotations {F}/garbage.xml", "XML|xml|not"),
    Case("ann-unsupported", "annotations {F}/unsupported.txt", "unsupported|format"),
    Case("ann-directory", "annotations {F}/adir.geojson", "(?i)is a directory"),
    Case("ann-overlay-no-slide", "annotations {F}/far.geojson --overlay {T}/o.png", "--slide", names="--overlay"),
    Case("ann-slide-mpp-neg", "annotations {F}/far.geojson --slide-mpp -1", "--slide-mpp", names="--slide-mpp"),
    Case("ann-far", f"annotations {{F}}/far.geojson --slide {S}", "outside", code=0, outputs=("far.overlay.png",)),
    Case("ann-vast", f"annotations {{F}}/vast.geojson --slide {S}", "outside", code=0, outputs=("vast.overlay.png",)),
    Case("ann-half", f"annotations {{F}}/half.geojson --slide {S}", "outside", code=0, outputs=("half.overlay.png",)),
    Case("ann-slide-not-slide", "annotations {F}/far.geojson --slide {F}/text.tif", "not a readable slide"),
    # tissue: thumbnails no machine can hold
    Case("tissue-mpp-tiny", f"tissue {S} --tissue-mpp 0.001", "--tissue-mpp", names="--tissue-mpp"),
    Case("tissue-mpp-zero", f"tissue {S} --tissue-mpp 0", "--tissue-mpp", names="--tissue-mpp"),
    Case("tissue-huge-slide", "tissue {F}/huge.tif", "GiB|too large|memory"),
    Case("tissue-mpp-1e6", "tissue {F}/mpp_1e6.tif", "--slide-mpp"),
    Case("tissue-out-dir", f"tissue {S} --out {{T}}/d.png", "is a directory", setup=lambda t: (t / "d.png").mkdir()),
    Case("tissue-out-suffix", f"tissue {S} --out {{T}}/mask.bmp", ".bmp|suffix|format", names="mask.bmp"),
    # synth: --overwrite replaces only a synth folder
    Case(
        "synth-cwd-overwrite", "synth . --slides 1 --size 512 --overwrite", "synth", names="", setup=_mkdir_keep, cwd=""
    ),
    Case(
        "synth-foreign-overwrite",
        "synth {T}/x --slides 1 --size 512 --overwrite",
        "synth.json",
        setup=lambda t: _mkdir_keep(t / "x"),
    ),
    Case(
        "synth-symlink-overwrite",
        "synth {T}/link --slides 1 --size 512 --overwrite",
        "symlink|symbolic",
        setup=_symlinked_keep,
    ),
    Case(
        "synth-parent-overwrite",
        "synth .. --slides 1 --size 512 --overwrite",
        "current|working",
        names="",
        setup=lambda t: _mkdir_keep(t / "sub"),
        cwd="sub",
    ),
    Case("synth-not-empty", "synth {T}/x --slides 1 --size 512", "not empty", setup=lambda t: _mkdir_keep(t / "x")),
    Case(
        "synth-is-file", "synth {T}/f --slides 1 --size 512", "not a folder", setup=lambda t: (t / "f").write_text("")
    ),
    Case("synth-slides-zero", "synth {T}/x --slides 0", "slides", names="slides"),
    Case("synth-size-small", "synth {T}/x --size 10", "size", names="size"),
    Case("synth-mpp", "synth {T}/x --slide-mpp 50", "mpp", names="mpp"),
    Case("synth-split", "synth {T}/x --split train", "split", names="train"),
    Case("synth-labels", "synth {T}/x --labels foo", "foo", names="foo"),
    # models and export
    Case("models-depth-20", "models --depth 20", "depth|size", names="20"),
    Case("models-size-odd", "models --size 100", "100", names="100"),
    Case("models-width-zero", "models --width 0", "width", names="width"),
    Case("export-pickle", "export {F}/evil.pt --out {T}/m.onnx", "unsafe pickle: refused"),
    Case("export-raw-pickle", "export {F}/pickle.pt --out {T}/m.onnx", "unsafe pickle: refused"),
    Case("export-garbage", "export {F}/garbage.pt --out {T}/m.onnx", "not a mrseg checkpoint"),
    Case("export-foreign", "export {F}/foreign.pt --out {T}/m.onnx", "not an mrseg checkpoint"),
    Case("export-format", "export {F}/ckpt.pt --format pdf --out {T}/m.pdf", "pdf", names="pdf"),
    Case(
        "export-out-exists",
        "export {F}/ckpt.pt --format torchscript --out {T}/m.pt",
        "exists; pass --overwrite",
        names="m.pt",
        setup=lambda t: (t / "m.pt").write_bytes(b"keep"),
    ),
    Case(
        "export-out-dir",
        "export {F}/ckpt.pt --format torchscript --out {T}/d",
        "is a directory",
        setup=lambda t: _mkdir_keep(t / "d"),
    ),
    # train: models the machine cannot hold, configs that cannot work, data that does not fit
    Case("train-depth-20", f"{TRAIN} --set model.mpps=[2.0] --set model.depth=20", "depth", names="depth"),
    Case("train-width-huge", f"{TRAIN} --set model.width=4096", r"GiB", names="model"),
    Case("train-patch-odd", f"{TRAIN} --set model.patch_size=100", "patch_size|100", names="100"),
    Case("train-mpps-order", f"{TRAIN} --set model.mpps=[2.0,1.0]", "mpps", names="mpps"),
    Case("train-bad-key", f"{TRAIN} --set model.nope=1", "nope", names="nope"),
    Case("train-config-missing", "train --config {F}/none.yaml --data {F}/data --out {T}/run", "none.yaml|not found"),
    Case("train-config-yaml", "train --config {F}/bad.yaml --data {F}/data --out {T}/run", "YAML|yaml"),
    Case("train-data-missing", "train --config synthetic_unet --data {F}/nodata --out {T}/run", "nodata"),
    Case("train-foreign-out", "train --config synthetic_unet --data {F}/data --out {F}/run_taken", "metrics.csv|exist"),
    Case("train-resume-empty", "train --resume {T}/r", "last.pt", setup=lambda t: (t / "r").mkdir(), names="r"),
    Case("train-outside", f"{TRAIN} --data {{F}}/data_outside --set train.epochs=1", "outside", names="data_outside"),
    # predict: checkpoints, slides, options and output folders
    Case("predict-ckpt-missing", f"predict {{F}}/none.pt {S} --out {{T}}/out", "not found"),
    Case("predict-ckpt-pickle", f"predict {{F}}/evil.pt {S} --out {{T}}/out", "unsafe pickle: refused"),
    Case("predict-ckpt-truncated", f"predict {{F}}/truncated.pt {S} --out {{T}}/out", "not a mrseg checkpoint"),
    Case("predict-ckpt-mismatch", f"predict {{F}}/mismatch.pt {S} --out {{T}}/out", "differ|mismatch"),
    Case("predict-slide-dir", f"predict {CK} {{F}}/adir --out {{T}}/out", "is a directory", names="adir"),
    Case("predict-slide-text", f"predict {CK} {{F}}/text.tif --out {{T}}/out", "not a readable slide"),
    Case("predict-slide-missing", f"predict {CK} {{F}}/none.tif --out {{T}}/out", "not found"),
    Case("predict-out-mpp-zero", f"{P} --out-mpp 0", "--out-mpp", names="--out-mpp"),
    Case("predict-out-mpp-neg", f"{P} --out-mpp -1", "--out-mpp", names="--out-mpp"),
    Case("predict-slide-mpp-1e6", f"{P} --slide-mpp 1e6", "--slide-mpp", names="--slide-mpp"),
    Case("predict-slide-mpp-1e-5", f"{P} --slide-mpp 1e-5", "--slide-mpp", names="--slide-mpp"),
    Case("predict-metadata-mpp-1e6", f"predict {CK} {{F}}/mpp_1e6.tif --out {{T}}/out", "--slide-mpp"),
    Case("predict-batch-zero", f"{P} --batch-size 0", "batch", names="batch"),
    Case("predict-overlap-one", f"{P} --overlap 1", "overlap", names="overlap"),
    Case("predict-threshold", f"{P} --threshold 2", "threshold", names="threshold"),
    Case(
        "predict-out-is-file",
        f"predict {CK} {S} --out {{T}}/f",
        "not a folder|not a directory|exists",
        setup=lambda t: (t / "f").write_text("mine"),
    ),
    Case("predict-into-slides", f"predict {CK} {{T}}/in/slide.tif --out {{T}}/in", "slide.tif"),
    Case("predict-foreign-record", f"{P}", "slide.json", setup=_foreign_record),
    # evaluate: geometry that does not match, maps that cannot be read, a report folder that is not ours
    Case("eval-small-map", f"{E} --pred {{F}}/pred_small", "10x10|shape", names="slide.tif"),
    Case("eval-truncated-map", f"{E} --pred {{F}}/pred_truncated", "cannot read", names="slide.tif"),
    Case(
        "eval-mask-shape",
        "evaluate --pred {F}/pred --truth {F}/truth_mask --out {T}/report",
        "70x50|shape",
        names="slide_mask.tif",
    ),
    Case("eval-foreign-metrics", "evaluate --pred {F}/pred --truth {F}/truth --out {F}/foreign_out", "metrics.csv"),
    Case("eval-pred-missing", f"{E} --pred {{F}}/nopred", "nopred"),
    Case("eval-pred-empty", f"{E} --pred {{F}}/adir", "adir"),
    Case("eval-truth-missing", "evaluate --pred {F}/pred --truth {F}/notruth --out {T}/r", "notruth"),
    Case("eval-mpp-zero", f"{E} --pred {{F}}/pred --eval-mpp 0", "mpp", names="mpp"),
    Case("eval-within", f"{E} --pred {{F}}/pred --within foo", "foo", names="foo"),
    Case("eval-bins", f"{E} --pred {{F}}/pred --bins 0", "bins", names="bins"),
    # demo: the folder must be a demo folder
    Case("demo-foreign-folder", "demo --quick --out {T}/d --device cpu", "demo", setup=lambda t: _mkdir_keep(t / "d")),
    Case("demo-out-file", "demo --quick --out {T}/f", "not a folder|exists", setup=lambda t: (t / "f").write_text("")),
    Case("demo-workers", "demo --quick --out {T}/d --workers -1", "--workers", names="--workers"),
    Case("demo-set", "demo --quick --out {T}/d --set nokey", "KEY=VALUE|nokey", names="nokey"),
]


def _copy_slide(tmp: Path, files: Path, folder: str) -> None:
    (tmp / folder).mkdir(exist_ok=True)
    shutil.copy(files / "slide.tif", tmp / folder / "s.tif" if folder == "." else tmp / folder / "slide.tif")


#: Setups that need the module's files (a copy of the slide in the case's folder).
NEEDS_SLIDE_COPY = {"patch-out-is-slide": ".", "predict-into-slides": "in"}


def _message_names(case: Case) -> list[str]:
    """What the error line must name (one of): ``case.names``, else any file of the command line."""
    if case.names is not None:
        return [case.names]
    return [Path(found).name for found in re.findall(r"\{[FT]\}/([^\s]+)", case.args)] or [""]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "case"
    work.mkdir()
    if case.id in NEEDS_SLIDE_COPY:
        _copy_slide(work, files, NEEDS_SLIDE_COPY[case.id])
    if case.setup is not None:
        case.setup(work)
    monkeypatch.chdir(work / case.cwd)
    argv = case.args.format(F=files, T=work).split()
    outputs = tuple(work / o for o in case.outputs)
    before = (_tree_state(files), _tree_state(work, outputs))
    result = runner.invoke(app, ["-q", *argv])
    assert result.exit_code == case.code, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if case.code:  # one error line, the last (only the project's own warnings may come before it)
        assert [line for line in lines if line.startswith("error: ")] == lines[-1:], result.stderr
        assert not any(name in line for line in lines[:-1] for name in THIRD_PARTY_LOGGERS), result.stderr
        assert re.search(case.match, lines[-1]), lines[-1]
        assert any(name in lines[-1] for name in _message_names(case)), lines[-1]
    else:
        assert re.search(case.match, result.stderr), result.stderr
    assert (_tree_state(files), _tree_state(work, outputs)) == before


def test_the_campaign_is_large_enough() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)
