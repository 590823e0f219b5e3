"""DDP plumbing for ``torchrun``: who am I, who writes, and waiting for the others.

Under ``torchrun`` (``RANK``/``WORLD_SIZE`` set) the process group is initialised with NCCL on CUDA and
gloo on CPU. Only rank 0 writes files; every rank trains; evaluation runs on rank 0 after a barrier.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


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


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
