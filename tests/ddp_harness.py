"""What the two-process DDP tests share: one objective built identically in every process, the
whole batch (each rank takes its rows of it) and a tiny pixel source for the real Trainer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from radtex_bench.encoders import Encoder
from radtex_bench.objectives import OBJECTIVES, SetupContext


def set_up_objective(
    name: str,
    params: dict,
    reports: list[str],
    out_dir: Path,
    rank: int = 0,
    world_size: int = 1,
    barrier=lambda: None,
):
    """The same initial weights in every process (seeded), set up for ``world_size`` processes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    objective = OBJECTIVES.get(name)(Encoder("resnet18"), **params)
    objective.setup(
        SetupContext(
            reports=reports,
            labels=np.zeros((len(reports), 1), np.float32),
            pathologies=["X"],
            out_dir=out_dir,
            image_size=32,
            seed=0,
            rank=rank,
            world_size=world_size,
            barrier=barrier,
        )
    )
    return objective


def batch_rows(name: str, reports: list[str], rows: slice = slice(None)) -> dict:
    """``rows`` of the whole batch (one image per report): images and reports, or two views."""
    n = len(reports)
    g = torch.Generator().manual_seed(1)
    images = torch.randn(n, 3, 32, 32, generator=g)  # [n, 3, 32, 32]
    if "views" not in OBJECTIVES.get(name).needs:
        return {"image": images[rows], "report": reports[rows]}
    other = images + 0.1 * torch.randn(n, 3, 32, 32, generator=g)
    return {"views": [images[rows], other[rows]]}


class Pixels:
    """``n`` fixed random grey images of ``size`` pixels, indexed like a pixel cache."""

    def __init__(self, n: int, size: int = 32) -> None:
        self.pixels = np.random.default_rng(0).integers(0, 256, (n, size, size), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.pixels)

    def __call__(self, i: int) -> np.ndarray:
        return self.pixels[i]
