"""Recipe options of the issue-11 study: L2 readings, channels-last, selection rules, validation cache, mining."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mrseg.models.checkpoint import load_checkpoint
from mrseg.training.config import load_config
from mrseg.training.loop import resume_config, train
from mrseg.training.losses import conv_weights, l2_penalty, make_optimizer
from mrseg.training.mining import mine_hard_negatives, mines_after
from mrseg.training.runlog import read_metrics
from mrseg.training.sampling import load_datasets
from mrseg.training.state import selection_score
from training_data import make_dataset, tiny_overrides


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"), 5)


def _rows(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run / "metrics.csv").open()))


def test_l2_modes_and_decoupled_optimizer() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 1, 1))
    full = float(l2_penalty(model, 0.01).detach())
    assert float(l2_penalty(model, 0.01, "half_sum").detach()) == pytest.approx(full / 2)
    assert float(l2_penalty(model, 0.01, "decoupled")) == 0.0
    assert type(make_optimizer(model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, l2=0.01)) is torch.optim.Adam
    opt = make_optimizer(model, lr=0.1, betas=(0.9, 0.999), eps=1e-8, l2=0.5, l2_mode="decoupled")
    assert isinstance(opt, torch.optim.AdamW)
    decayed, other = opt.param_groups
    assert {id(p) for p in decayed["params"]} == {id(w) for w in conv_weights(model)}
    assert decayed["weight_decay"] == 0.5 and other["weight_decay"] == 0.0
    # with zero gradients only the decay acts: w <- w * (1 - lr * l2) on conv weights, BatchNorm untouched
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    convs = {id(w) for w in conv_weights(model)}
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.allclose(p, b * (1 - 0.1 * 0.5) if id(p) in convs else b)


def test_selection_score_rules() -> None:
    assert selection_score("val_loss", 0.3, 0.9, 4) == 0.3
    assert selection_score("val_auc", 0.3, 0.9, 4) == -0.9
    assert math.isinf(selection_score("val_auc", 0.3, float("nan"), 4))
    assert selection_score("last", 0.3, 0.9, 4) == -4.0


@pytest.mark.parametrize(
    "extra",
    [
        {"train.l2_mode": "half_sum", "train.data_reduction": "sum_examples"},
        {"train.l2_mode": "decoupled", "train.channels_last": True},
    ],
)
def test_training_with_l2_modes_and_channels_last(data: Path, tmp_path: Path, extra: dict[str, object]) -> None:
    result = train(load_config(None, tiny_overrides(data, **extra)), tmp_path / "run", device="cpu")
    assert result.epochs_completed == 2 and result.best_val_loss is not None
    assert all(float(r["train_loss"]) < 5 for r in _rows(tmp_path / "run"))  # the logged loss stays a mean


def test_selection_rules_and_validation_options(data: Path, tmp_path: Path) -> None:
    def run(name: str, **extra: object) -> object:
        cfg = load_config(None, tiny_overrides(data, **{"train.epochs": 3, **extra}))
        return train(cfg, tmp_path / name, device="cpu")

    plain = run("plain")
    rows = _rows(tmp_path / "plain")
    aucs = [float(r["val_auc"]) for r in rows]
    assert all(0.0 <= a <= 1.0 for a in aucs)
    cached = run("cached", **{"sampling.val_cache": True})  # the validation cache changes no number
    assert [r["val_loss"] for r in _rows(tmp_path / "cached")] == [r["val_loss"] for r in rows]
    assert cached.best_epoch == plain.best_epoch  # type: ignore[attr-defined]
    assert run("last", **{"train.select": "last"}).best_epoch == 3  # type: ignore[attr-defined]
    by_auc = run("auc", **{"train.select": "val_auc"})
    assert by_auc.best_epoch == 1 + max(range(3), key=lambda i: (aucs[i], -i))  # type: ignore[attr-defined]
    best_loss = float(rows[by_auc.best_epoch - 1]["val_loss"])  # type: ignore[attr-defined]
    assert by_auc.best_val_loss == pytest.approx(best_loss)  # type: ignore[attr-defined]
    pos0 = load_config(None, tiny_overrides(data, **{"sampling.val_positive_fraction": 0.0}))
    train_ds, val_ds = load_datasets(pos0)
    assert val_ds.positive_fraction == 0.0 and train_ds.positive_fraction == 0.5


def test_old_metrics_csv_without_val_auc_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,train_loss,val_loss,l2_loss,lr,samples_per_s,time_s\n1,0.5,0.6,0.1,0.001,10,2\n")
    (row,) = read_metrics(path)
    assert row.val_loss == 0.6 and math.isnan(row.val_auc)


def test_validation_cache_returns_the_same_items(data: Path) -> None:
    cfg = load_config(None, tiny_overrides(data, **{"sampling.val_cache": True}))
    _, val_ds = load_datasets(cfg)
    first = val_ds[3]
    assert val_ds[3] is first and torch.equal(load_datasets(cfg)[1][3]["patches"], first["patches"])


MINING = {
    "train.epochs": 3,
    "sampling.hard_negative_fraction": 0.5,
    "sampling.hard_negative_epochs": "[1]",
    "sampling.hard_negative_candidates": 16,
    "sampling.hard_negative_min_fp": 0.01,
    "sampling.hard_negative_threshold": 0.1,
}


def test_hard_negative_mining_pool_and_sampling(data: Path, tmp_path: Path) -> None:
    cfg = load_config(None, tiny_overrides(data, **MINING))
    assert mines_after(cfg, 1) and not mines_after(cfg, 2) and not mines_after(cfg, 3)
    result = train(cfg, tmp_path / "run", device="cpu")
    assert result.epochs_completed == 3
    pool = load_checkpoint(tmp_path / "run" / "last.pt").train_state["hard_pool"]
    assert pool is not None and len(pool) > 0
    train_ds, _ = load_datasets(cfg)
    rows = mine_hard_negatives(result.model, train_ds, cfg, 0, device=torch.device("cpu"))
    assert rows.shape[1] == 4 and np.all(rows[:, 3] >= 0.01) and np.all(rows[:, 0] < len(train_ds.slides))
    # items drawn from the pool sit (up to jitter) on pool centres; an empty pool restores plain sampling
    plain = train_ds[(5, 0)]
    train_ds.set_hard_pool(rows, 1.0)
    item = train_ds[(5, 0)]
    jitter = cfg.sampling.jitter_um / train_ds.slides[0].mpp + 1e-6
    assert (np.abs(rows[:, 1:3] - item["center"].numpy()).max(axis=1) <= jitter).any()
    train_ds.set_hard_pool(np.zeros((0, 4)), 1.0)
    assert torch.equal(train_ds[(5, 0)]["patches"], plain["patches"])


@pytest.mark.slow
def test_hard_negative_mining_resumes_exactly(data: Path, tmp_path: Path) -> None:
    a = train(load_config(None, tiny_overrides(data, **MINING)), tmp_path / "a", device="cpu")
    train(load_config(None, tiny_overrides(data, **{**MINING, "train.epochs": 2})), tmp_path / "b", device="cpu")
    b = train(resume_config(tmp_path / "b", ["train.epochs=3"]), tmp_path / "b", resume=True, device="cpu")
    for pa, pb in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).state_dict


def test_weight_average_is_validated_and_saved_as_best(data: Path, tmp_path: Path) -> None:
    # one step per epoch: after epoch 1 the average is the weights w1, after epoch 2 d * w1 + (1 - d) * w2
    decay = 0.75
    common = {"train.steps_per_epoch": 1, "train.ema": decay, "train.select": "last"}
    one_epoch = load_config(None, tiny_overrides(data, **{**common, "train.epochs": 1}))
    one = train(one_epoch, tmp_path / "one", device="cpu")
    w1 = _weights(tmp_path / "one" / "last.pt")
    assert all(torch.equal(a, b) for a, b in zip(one.model.state_dict().values(), w1.values(), strict=True))
    two = train(load_config(None, tiny_overrides(data, **common)), tmp_path / "two", device="cpu")
    w2, best = _weights(tmp_path / "two" / "last.pt"), _weights(tmp_path / "two" / "best.pt")
    for key, average in best.items():
        if average.is_floating_point():
            assert torch.allclose(average, decay * w1[key] + (1 - decay) * w2[key], atol=1e-6), key
    assert not all(torch.equal(best[k], w2[k]) for k in best)  # best.pt is the average, last.pt the weights
    ema_state = load_checkpoint(tmp_path / "two" / "last.pt").train_state["ema"]
    assert all(torch.equal(ema_state[f"module.{k}"], v) for k, v in best.items())
    assert all(torch.equal(a, best[k]) for k, a in two.model.state_dict().items())  # the average is returned
    # the validation row of epoch 2 scores the average, not the weights: it differs from a run without one
    plain = train(load_config(None, tiny_overrides(data, **{**common, "train.ema": 0.0})), tmp_path / "p", device="cpu")
    assert load_checkpoint(tmp_path / "p" / "last.pt").train_state["ema"] is None
    assert all(torch.equal(a, w2[k]) for k, a in plain.model.state_dict().items())
    assert _rows(tmp_path / "p")[1]["val_loss"] != _rows(tmp_path / "two")[1]["val_loss"]


def test_weight_average_resumes_exactly(data: Path, tmp_path: Path) -> None:
    extra = {"train.ema": 0.6, "train.epochs": 3}
    train(load_config(None, tiny_overrides(data, **extra)), tmp_path / "a", device="cpu")
    train(load_config(None, tiny_overrides(data, **{**extra, "train.epochs": 2})), tmp_path / "b", device="cpu")
    train(resume_config(tmp_path / "b", ["train.epochs=3"]), tmp_path / "b", resume=True, device="cpu")
    for name in ("best.pt", "last.pt"):
        a, b = _weights(tmp_path / "a" / name), _weights(tmp_path / "b" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    ea = load_checkpoint(tmp_path / "a" / "last.pt").train_state["ema"]
    eb = load_checkpoint(tmp_path / "b" / "last.pt").train_state["ema"]
    assert all(torch.equal(ea[k], eb[k]) for k in ea)
