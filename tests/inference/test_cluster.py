"""Many slides on Dask: a LocalCluster of 2 workers, one task per slide, failures isolated."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from mrseg.core.errors import ConfigError
from mrseg.core.input_spec import InputSpec
from mrseg.inference import cluster
from mrseg.inference.runner import file_sha256
from mrseg.inference.settings import PredictSettings
from mrseg.models import create_model
from mrseg.models.checkpoint import make_checkpoint, save_checkpoint
from mrseg.wsi.tiff import write_pyramidal_tiff


def make_slide(path: Path, seed: int, *, mpp: float | None = 1.0) -> Path:
    rng = np.random.default_rng(seed)
    image = np.full((192, 224, 3), 255, np.uint8)
    image[20:180, 20:200] = rng.integers(60, 200, (160, 180, 3), dtype=np.uint8)
    if mpp is None:
        tifffile.imwrite(path, image, photometric="rgb")
        return path
    return write_pyramidal_tiff(path, image, mpp, compression="zlib", min_size=64)


@pytest.fixture()
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = create_model("unet", mpps=[1.0], width=4, depth=2)
    return save_checkpoint(tmp_path / "model.pt", make_checkpoint(model, InputSpec((1.0,), 32)))


@pytest.mark.slow
def test_local_cluster_of_two_process_workers_on_three_slides(tmp_path: Path, checkpoint: Path) -> None:
    slides = [make_slide(tmp_path / f"s{i}.tif", i) for i in range(3)]
    bad = make_slide(tmp_path / "nompp.tif", 9, mpp=None)
    out = tmp_path / "out"
    settings = PredictSettings(tissue_mask=False, loader_threads=1)
    results = cluster.predict_slides(checkpoint, [bad, *slides], out, settings, workers=2, processes=True)
    assert [r.status for r in results] == ["failed", "done", "done", "done"]
    assert "nompp.tif" in (results[0].error or "")
    assert sorted(p.name for p in out.glob("*.json")) == ["s0.json", "s1.json", "s2.json"]
    loads: dict[str, int] = {}
    for r in results:  # each worker process loaded the model once, however many slides it ran
        loads[r.worker] = max(loads.get(r.worker, 0), r.model_loads)
    assert set(loads.values()) == {1} and 1 <= len(loads) <= 2


@pytest.mark.slow
def test_local_cluster_of_two_thread_workers_loads_the_model_once(tmp_path: Path, checkpoint: Path) -> None:
    """Thread workers (processes=False) share this process, so they share its model cache."""
    slides = [make_slide(tmp_path / f"s{i}.tif", i) for i in range(3)]
    bad = make_slide(tmp_path / "nompp.tif", 9, mpp=None)
    out = tmp_path / "out"
    settings = PredictSettings(tissue_mask=False, loader_threads=1)
    loads_before = cluster.MODEL_CACHE.loads
    results = cluster.predict_slides(checkpoint, [*slides, bad], out, settings, workers=2, processes=False)
    assert [r.status for r in results] == ["done", "done", "done", "failed"]
    assert "nompp.tif" in (results[3].error or "") and "mpp" in (results[3].error or "")
    for s in slides:
        record = json.loads((out / f"{s.stem}.json").read_text())
        assert record["tiles"]["total"] > 0 and (out / f"{s.stem}.tif").is_file()
    assert cluster.MODEL_CACHE.loads == loads_before + 1  # both thread workers share one process: loaded once
    assert {r.worker for r in results} == {results[0].worker}
    again = cluster.predict_slides(checkpoint, slides, out, settings, workers=2, processes=False)
    assert [r.status for r in again] == ["skipped"] * 3


def test_model_cache_loads_once_and_keeps_the_most_recent(checkpoint: Path, tmp_path: Path) -> None:
    cache = cluster.ModelCache(max_models=1)
    sha = file_sha256(checkpoint)
    first = cache.get(checkpoint, sha, "cpu")
    assert cache.get(str(checkpoint), sha, "cpu") is first and cache.loads == 1
    cache.get(checkpoint, sha, "cpu", "bf16")  # another key evicts the first (max_models=1)
    assert cache.get(checkpoint, sha, "cpu") is not first and cache.loads == 3


def test_a_failing_slide_comes_back_as_a_failed_result(tmp_path: Path, checkpoint: Path) -> None:
    sha = file_sha256(checkpoint)
    result = cluster.run_cached(checkpoint, sha, tmp_path / "missing.tif", tmp_path / "out", PredictSettings())
    assert result.status == "failed" and "missing.tif" in (result.error or "") and result.model_loads >= 1


def test_missing_dask_gives_an_install_hint(tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed: import raises ImportError
    slide = make_slide(tmp_path / "s.tif", 0)
    with pytest.raises(ConfigError, match=r'pip install "mrseg\[dask\]"'):
        cluster.predict_slides(checkpoint, [slide], tmp_path / "out", workers=2)


def test_duplicate_output_names_are_refused(tmp_path: Path, checkpoint: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, two = make_slide(tmp_path / "a" / "s.tif", 0), make_slide(tmp_path / "b" / "s.tif", 1)
    with pytest.raises(ConfigError, match="share the output name"):
        cluster.predict_slides(checkpoint, [one, two], tmp_path / "out")
