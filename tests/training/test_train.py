"""The training loop: recipe pieces, run folder, determinism, exact resume, interruption, failures."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mrseg.cli import app
from mrseg.core.errors import ConfigError, SlideError
from mrseg.models.checkpoint import load_checkpoint
from mrseg.models.inputs import to_tensor
from mrseg.training.config import load_config
from mrseg.training.loop import TrainingInterrupted, resume_config, train
from training_data import corrupt_tiles, make_dataset, tiny_overrides

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"), 5)


def _state(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).state_dict


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- the loop -----------------------------------------------------------------------------------


def test_run_folder_and_checkpoint_contents(data: Path, tmp_path: Path) -> None:
    cfg = load_config(None, tiny_overrides(data, **{"output.tensorboard": True}))
    result = train(cfg, tmp_path / "run", device="cpu")
    run = tmp_path / "run"
    assert result.epochs_completed == 2 and result.stop_reason == "completed"
    for name in ("config.yaml", "metrics.csv", "best.pt", "last.pt", "loss_curve.png"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").glob("events.out.tfevents.*"))
    assert load_config(run / "config.yaml") == cfg
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert set(rows[0]) >= {"epoch", "train_loss", "val_loss", "lr", "samples_per_s", "time_s"}
    assert all(float(r["samples_per_s"]) > 0 and float(r["train_loss"]) > 0 for r in rows)
    last = load_checkpoint(run / "last.pt")  # weights_only=True inside
    assert last.epoch == 2 and last.config == cfg.to_dict()
    assert last.input_spec == cfg.model.input_spec()
    assert last.input_spec.mpps == (1.0, 2.0) and "mpps" not in last.model_kwargs
    assert last.model_name == "mrn_bilinear" and last.labels.classes == ("background", "tumor")
    assert last.tissue is not None and last.tissue == cfg.data.tissue
    assert {"optimizer", "scheduler", "scaler", "rng"} <= set(last.train_state)
    assert isinstance(last.train_state["rng"]["numpy"]["keys"], list)
    best = load_checkpoint(run / "best.pt")
    assert best.val_loss == pytest.approx(min(float(r["val_loss"]) for r in rows))
    assert best.epoch == result.best_epoch
    model = best.build_model()
    x = to_tensor(torch.zeros(1, 2, 16, 16, 3, dtype=torch.uint8), cfg.model.input_spec())
    assert model(x).shape == (1, 1, 16, 16)


def test_deterministic_on_cpu(data: Path, tmp_path: Path) -> None:
    cfg = load_config(None, tiny_overrides(data, **{"train.epochs": 1}))
    train(cfg, tmp_path / "a", device="cpu")
    train(cfg, tmp_path / "b", device="cpu")
    assert _same(_state(tmp_path / "a" / "last.pt"), _state(tmp_path / "b" / "last.pt"))
    # Samples depend only on (seed, epoch, index): loader worker processes change nothing.
    workers = load_config(None, tiny_overrides(data, **{"train.epochs": 1, "data.num_workers": 1}))
    train(workers, tmp_path / "w", device="cpu")
    assert _same(_state(tmp_path / "a" / "last.pt"), _state(tmp_path / "w" / "last.pt"))
    seeded = load_config(None, tiny_overrides(data, **{"train.epochs": 1, "train.seed": 1}))
    train(seeded, tmp_path / "c", device="cpu")
    assert not _same(_state(tmp_path / "a" / "last.pt"), _state(tmp_path / "c" / "last.pt"))


def test_deterministic_mode_skips_the_nan_fill_and_changes_nothing(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch.utils.deterministic as det

    from mrseg.training import loop, state

    cfg = load_config(None, tiny_overrides(data, **{"train.epochs": 1}))
    train(cfg, tmp_path / "fast", device="cpu")
    assert torch.are_deterministic_algorithms_enabled() and det.fill_uninitialized_memory is False

    def seed_with_fill(seed: int, *, deterministic: bool = True) -> None:
        state.seed_everything(seed, deterministic=deterministic)
        det.fill_uninitialized_memory = True  # torch's default: NaN in every new tensor

    monkeypatch.setattr(loop, "seed_everything", seed_with_fill)
    train(cfg, tmp_path / "filled", device="cpu")
    assert det.fill_uninitialized_memory is True
    det.fill_uninitialized_memory = False
    assert _same(_state(tmp_path / "fast" / "last.pt"), _state(tmp_path / "filled" / "last.pt"))


def test_keep_freed_heap_is_asked_for_by_the_config(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train.keep_freed_heap`` calls core.memory.keep_freed_heap, or not (process-wide: tested in tests/core)."""
    from mrseg.training import loop

    calls: list[int] = []
    monkeypatch.setattr(loop, "keep_freed_heap", lambda: calls.append(1) or True)
    for keep in (True, False):
        cfg = load_config(None, tiny_overrides(data, **{"train.epochs": 1, "train.keep_freed_heap": keep}))
        train(cfg, tmp_path / str(keep), device="cpu")
        assert len(calls) == 1  # asked for by the first run only


def test_resume_is_exact(data: Path, tmp_path: Path) -> None:
    two = load_config(None, tiny_overrides(data, **{"train.scheduler": "step", "train.scheduler_step": 1}))
    train(two, tmp_path / "full", device="cpu")
    one = load_config(
        None, tiny_overrides(data, **{"train.scheduler": "step", "train.scheduler_step": 1, "train.epochs": 1})
    )
    train(one, tmp_path / "part", device="cpu")
    assert load_checkpoint(tmp_path / "part" / "last.pt").epoch == 1
    cfg = resume_config(tmp_path / "part", ["train.epochs=2"])
    result = train(cfg, tmp_path / "part", resume=True, device="cpu")
    assert result.epochs_completed == 2
    assert _same(_state(tmp_path / "full" / "last.pt"), _state(tmp_path / "part" / "last.pt"))
    full = list(csv.DictReader((tmp_path / "full" / "metrics.csv").open()))
    part = list(csv.DictReader((tmp_path / "part" / "metrics.csv").open()))
    assert [(r["epoch"], r["train_loss"], r["val_loss"], r["lr"]) for r in full] == [
        (r["epoch"], r["train_loss"], r["val_loss"], r["lr"]) for r in part
    ]


def test_refuses_to_overwrite_and_to_change_model(data: Path, tmp_path: Path) -> None:
    cfg = load_config(None, tiny_overrides(data, **{"train.epochs": 1}))
    train(cfg, tmp_path / "r", device="cpu")
    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg, tmp_path / "r", device="cpu")
    with pytest.raises(ConfigError, match=r"model\.width"):
        resume_config(tmp_path / "r", ["model.width=8"])


def test_early_stopping(data: Path, tmp_path: Path) -> None:
    cfg = load_config(None, tiny_overrides(data, **{"train.epochs": 5, "train.lr": 1e-12, "train.patience": 1}))
    result = train(cfg, tmp_path / "es", device="cpu", progress=True)  # rich bars on, too
    assert result.stop_reason == "early_stopping" and result.epochs_completed < 5


def test_slide_failure_mid_run_stops_with_checkpoint(data: Path, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    shutil.copytree(data.parent, copy)
    # A later level-0 tile of one slide is garbage: the slide opens, its tissue is found on the
    # coarser level, and reads fail only when a patch needs that tile (here during epoch 2).
    corrupt_tiles(copy / "slides" / "slide_01.tif", [6])
    cfg = load_config(None, tiny_overrides(copy / "manifest.csv", **{"train.epochs": 4}))
    with pytest.raises(SlideError) as info:
        train(cfg, tmp_path / "f", device="cpu")
    msg = str(info.value)
    assert "slide_01" in msg and "centred at level-0 (" in msg and "ZIPDecode" in msg and "holds epoch 1" in msg
    assert load_checkpoint(tmp_path / "f" / "last.pt").epoch == 1
    assert len(list(csv.DictReader((tmp_path / "f" / "metrics.csv").open()))) == 1


def test_slide_failure_in_a_worker_is_one_clean_line(data: Path, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    shutil.copytree(data.parent, copy)
    for slide in sorted((copy / "slides").glob("*.tif")):
        corrupt_tiles(slide)  # every level-0 tile
    cfg = load_config(None, tiny_overrides(copy / "manifest.csv", **{"data.num_workers": 1}))
    with pytest.raises(SlideError) as info:
        train(cfg, tmp_path / "fw", device="cpu")
    msg = str(info.value)
    assert "\n" not in msg and "Traceback" not in msg
    assert "slide_0" in msg and "failed to read the region" in msg and "holds epoch 0" in msg
    assert load_checkpoint(tmp_path / "fw" / "last.pt").epoch == 0


def test_interrupt_flag_stops_cleanly(data: Path, tmp_path: Path) -> None:
    def interrupt(epoch: int, step: int) -> None:
        if (epoch, step) == (2, 1):
            os.kill(os.getpid(), signal.SIGINT)

    cfg = load_config(None, tiny_overrides(data, **{"train.epochs": 3}))
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN when started in the background
    with pytest.raises(TrainingInterrupted, match="holds epoch 1") as info:
        train(cfg, tmp_path / "i", device="cpu", on_step=interrupt)
    assert info.value.signum == signal.SIGINT
    assert load_checkpoint(tmp_path / "i" / "last.pt").epoch == 1
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


def test_step_hook_sees_every_step_and_its_errors_keep_last_pt(data: Path, tmp_path: Path) -> None:
    steps: list[tuple[int, int]] = []
    train(
        load_config(None, tiny_overrides(data)), tmp_path / "h", device="cpu", on_step=lambda e, s: steps.append((e, s))
    )
    assert steps == [(e, s) for e in (1, 2) for s in (1, 2, 3)]

    def fail(epoch: int, step: int) -> None:
        if epoch == 2:
            raise RuntimeError("hook failed")

    with pytest.raises(RuntimeError, match="hook failed"):
        train(load_config(None, tiny_overrides(data)), tmp_path / "hf", device="cpu", on_step=fail)
    assert load_checkpoint(tmp_path / "hf" / "last.pt").epoch == 1


def test_cli_train_and_errors(data: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    sets = [
        a for kv in tiny_overrides(data, **{"train.epochs": 1}) if not kv.startswith("data.path") for a in ("--set", kv)
    ]
    res = runner.invoke(
        app, ["train", "--config", "synthetic_mrn_bilinear", "--data", str(data), "--out", str(tmp_path / "c"), *sets]
    )
    assert res.exit_code == 0, res.output
    assert load_checkpoint(tmp_path / "c" / "last.pt").epoch == 1
    res = runner.invoke(app, ["train", "--resume", str(tmp_path / "c"), "--set", "train.epochs=2"])
    assert res.exit_code == 0, res.output
    assert load_checkpoint(tmp_path / "c" / "last.pt").epoch == 2
    res = runner.invoke(app, ["train", "--out", str(tmp_path / "d"), "--data", str(data), "--set", "train.epochz=1"])
    assert res.exit_code == 1 and "train.epochz" in res.output
    res = runner.invoke(app, ["train", "--out", str(tmp_path / "d"), "--device", "tpu"])
    assert res.exit_code == 1


@pytest.mark.slow
def test_sigterm_then_resume_finishes(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "sig"
    sets = tiny_overrides(data, **{"train.epochs": 40, "train.steps_per_epoch": 4})
    cmd = [sys.executable, "-c", "from mrseg.cli import main; main()", "train", "--out", str(run), "--device", "cpu"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*cmd, *[a for kv in sets for a in ("--set", kv)]],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            metrics = run / "metrics.csv"
            if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:  # two epochs done
                break
            if proc.poll() is not None:
                pytest.fail(f"training exited early: {proc.stdout.read() if proc.stdout else ''}")
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        err, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "interrupted" in err
    done = load_checkpoint(run / "last.pt").epoch
    assert 2 <= done < 40
    more = ["--resume", str(run), "--device", "cpu", "--set", f"train.epochs={done + 2}"]
    res = subprocess.run([*cmd[:3], "train", *more], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    assert load_checkpoint(run / "last.pt").epoch == done + 2
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, done + 3))
