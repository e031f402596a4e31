"""DDP on CPU: two gloo processes train one step each on different patches and end with identical weights."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from mrseg.models.checkpoint import load_checkpoint
from mrseg.training.config import load_config
from training_data import make_dataset, tiny_overrides


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, data: str, out: str) -> None:
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(rank),
        }
    )
    torch.set_num_threads(1)
    from mrseg.training.loop import train

    cfg = load_config(None, tiny_overrides(Path(data), **{"train.epochs": 1, "train.steps_per_epoch": 2}))
    result = train(cfg, out, device="cpu")
    torch.save(
        {k: v.detach().clone() for k, v in result.model.state_dict().items()}, Path(out).parent / f"rank{rank}.pt"
    )


@pytest.mark.slow
def test_two_gloo_ranks_hold_identical_weights(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", 4)
    out = tmp_path / "run"
    mp.spawn(_worker, args=(2, _free_port(), str(data), str(out)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    # Only rank 0 wrote the run folder, and its checkpoint is what both ranks hold.
    last = load_checkpoint(out / "last.pt")
    assert last.epoch == 1 and last.train_state["world_size"] == 2
    assert all(torch.equal(last.state_dict[k], r0[k]) for k in r0)
    # The ranks trained on different patches: a single-process step from the same start differs.
    single = tmp_path / "single"
    from mrseg.training.loop import train

    cfg = load_config(None, tiny_overrides(data, **{"train.epochs": 1, "train.steps_per_epoch": 2}))
    train(cfg, single, device="cpu")
    s = load_checkpoint(single / "last.pt").state_dict
    assert not all(torch.equal(s[k], r0[k]) for k in r0)
