"""DDP plumbing for ``torchrun``: who am I, who writes, and waiting for the others.

Under ``torchrun`` (``RANK``/``WORLD_SIZE`` set) the process group is initialised with NCCL on CUDA and
gloo on CPU. Only rank 0 writes files; every rank trains; evaluation runs on rank 0 after a barrier.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.barrier()


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: torch.device) -> DistInfo:
    """Initialise the process group when launched by torchrun; otherwise a single process."""
    if not launched_by_torchrun():
        return DistInfo()
    world_size = int(os.environ["WORLD_SIZE"])
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world_size, local_rank)


def resolve_device(choice: str) -> torch.device:
    """``auto`` -> the local CUDA device when available, else the CPU."""
    from ..errors import UserError

    if choice == "cpu":
        return torch.device("cpu")
    if choice in ("cuda", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if choice == "cuda":
            raise UserError("--device cuda: no CUDA device is available; use --device cpu or auto")
        return torch.device("cpu")
    raise UserError(f"--device {choice!r}: choose auto, cpu or cuda")


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """``obj`` of every rank, in rank order (``[obj]`` in one process)."""
    if not (info.enabled and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def all_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of ``values`` over ranks (logged losses: every rank's rows, not only rank 0's)."""
    if not (info.enabled and dist.is_initialized()):
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / info.world_size


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True when ``flag`` is true on any rank (so that every rank stops at the same step)."""
    if not (info.enabled and dist.is_initialized()):
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def broadcast_buffers(module: nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics, which DDP leaves per rank)."""
    if not (info.enabled and dist.is_initialized()):
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
