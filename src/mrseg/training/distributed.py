"""Device choice and the thin DDP layer used by training (launched by ``torchrun``).

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them, picks the backend (NCCL on CUDA, gloo otherwise) and binds each
process to ``cuda:LOCAL_RANK``. Without those variables everything runs in one process.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from mrseg.core.device import resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes files and logs progress."""
        return self.rank == 0


def init_distributed(device_spec: str = "auto") -> DistContext:
    """Initialise the process group when launched by torchrun; otherwise a single-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_spec)
    if world_size <= 1:
        return DistContext(device=device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    log.debug("rank %d/%d on %s (%s)", rank, world_size, device, backend)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown_distributed() -> None:
    """Destroy the process group if one is active."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Sum a few floats over all ranks (identity in a single process)."""
    if not ctx.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.cpu()]


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True when ``flag`` is set on any rank (so all ranks stop at the same step)."""
    if not ctx.distributed:
        return flag
    return all_reduce_sum([1.0 if flag else 0.0], ctx)[0] > 0


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def broadcast_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP syncs buffers at the start of each forward pass, so after the last step of an epoch each
    rank's running statistics reflect only its own last batch; this makes them identical again
    (equal to what rank 0 saves) before validation.
    """
    if not ctx.distributed:
        return
    for buf in module.buffers():
        dist.broadcast(buf.data, src=0)


def broadcast_object(obj: object, ctx: DistContext) -> object:
    """Send rank 0's ``obj`` to every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
