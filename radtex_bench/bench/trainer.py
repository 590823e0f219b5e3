"""``radtex-bench bench trainer``: what the toolkit's training loop costs against a bare PyTorch loop.

Both loops train the same objective (``supervised``: encoder + linear head, masked BCE) from the same
initial weights with the same AdamW parameter groups, warmup-cosine schedule, gradient clipping and
batch size, on the same images already in memory as uint8. The bare loop indexes a tensor and calls
``to_model_input``; the toolkit runs :class:`~radtex_bench.engine.trainer.Trainer` (DataLoader over
:class:`~radtex_bench.data.pipeline.RadiographDataset`, metrics every ``log_every`` steps, progress,
checkpoint bookkeeping, stop-signal checks, and the rich progress display unless ``--quiet``). Only the checkpoint *writes* are left out
(``checkpoint_every: 0``; the final one happens after the clock stops): they are disk speed, not loop
overhead.

Each repetition times ``steps`` steps after ``warmup`` untimed ones, once per loop, back to back (the
order alternates between repetitions). ``ratio`` is the median over repetitions of toolkit / bare steps/s
within a repetition: pairing runs that are seconds apart cancels the slow drifts of a shared machine,
and the median discards the repetitions a neighbour's burst hit.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

PATHOLOGIES = ["Atelectasis", "Cardiomegaly", "Edema", "Pleural Effusion"]


@dataclass
class TrainerBenchmark:
    encoder: str
    image_size: int
    batch_size: int
    steps: int
    warmup: int
    repeats: int
    threads: int
    device: str
    toolkit_steps_per_s: float  # median over repetitions
    bare_steps_per_s: float
    ratio: float  # median of the per-repetition ratios toolkit / bare
    toolkit_runs: list[float]
    bare_runs: list[float]

    def to_json(self) -> dict[str, Any]:
        return {"benchmark": "trainer", **asdict(self)}


class MemoryPixels:
    """A pixel source over uint8 ``[N, S, S]`` already in memory (the benchmark's "no I/O" data)."""

    def __init__(self, pixels: np.ndarray):
        self.pixels = pixels

    def __len__(self) -> int:
        return len(self.pixels)

    def __call__(self, i: int) -> np.ndarray:
        return self.pixels[i]


def synthetic_batch_data(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 pixels ``[n, size, size]`` and float32 labels ``[n, P]`` with some missing (NaN)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    labels = rng.choice(np.array([0.0, 1.0, np.nan], dtype=np.float32), size=(n, len(PATHOLOGIES)))
    return pixels, labels


def make_objective(encoder: str, labels: np.ndarray, seed: int, out_dir: Path):
    from ..encoders import build_encoder
    from ..objectives import OBJECTIVES, SetupContext

    torch.manual_seed(seed)
    objective = OBJECTIVES.get("supervised")(build_encoder(encoder))
    objective.setup(
        SetupContext(
            reports=[""] * len(labels),
            labels=labels,
            pathologies=PATHOLOGIES,
            out_dir=out_dir,
            image_size=0,
            seed=seed,
        )
    )
    return objective


def bare_steps_per_s(
    objective,
    pixels: np.ndarray,
    labels: np.ndarray,
    cfg,
    steps: int,
    warmup: int,
    device: torch.device,
    seed: int,
) -> float:
    """The reference: a plain PyTorch loop over tensors in memory, same optimiser and schedule."""
    from ..data.pipeline import to_model_input
    from ..engine.optim import build_optimizer, build_scheduler

    objective.to(device).train()
    optimizer = build_optimizer(objective, objective.encoder, cfg, fused=device.type == "cuda")
    scheduler = build_scheduler(optimizer, cfg, steps + warmup)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    images = torch.from_numpy(pixels)[:, None]  # [N, 1, S, S] uint8
    targets = torch.from_numpy(labels)  # [N, P]
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    per_epoch = len(images) // cfg.batch_size
    start = time.perf_counter()
    for step in range(steps + warmup):
        if step == warmup:
            _sync(device)
            start = time.perf_counter()
        rows = order[(step % per_epoch) * cfg.batch_size : (step % per_epoch + 1) * cfg.batch_size]
        batch = {"image": to_model_input(images[rows], device), "labels": targets[rows].to(device)}
        loss = objective(batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    _sync(device)
    return steps / (time.perf_counter() - start)


def toolkit_steps_per_s(
    objective,
    pixels: np.ndarray,
    labels: np.ndarray,
    cfg,
    steps: int,
    warmup: int,
    device: torch.device,
    seed: int,
    out_dir: Path,
) -> float:
    """The same steps through :class:`Trainer`; the clock runs from step ``warmup`` to the last step."""
    from ..data.pipeline import RadiographDataset
    from ..engine.distributed import DistInfo
    from ..engine.trainer import Trainer

    dataset = RadiographDataset(MemoryPixels(pixels), needs=["image", "labels"], labels=labels, seed=seed)
    marks: dict[int, float] = {}

    def clock(trainer: Trainer) -> None:
        if trainer.pos.step in (warmup, warmup + steps):
            _sync(device)
            marks[trainer.pos.step] = time.perf_counter()

    trainer = Trainer(
        objective, dataset, cfg, out_dir, device, DistInfo(), seed, workers=0, label="bench", step_hook=clock
    )
    trainer.fit()
    return steps / (marks[warmup + steps] - marks[warmup])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_trainer_benchmark(
    encoder: str = "resnet18",
    image_size: int = 32,
    batch_size: int = 16,
    steps: int = 8,
    warmup: int = 2,
    repeats: int = 9,
    seed: int = 0,
    device: str = "cpu",
    threads: int | None = 1,
) -> TrainerBenchmark:
    """Interleaved repetitions of both loops; ``threads`` None keeps torch's setting (restored after)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        toolkit, bare = _interleaved_runs(
            encoder, image_size, batch_size, steps, warmup, repeats, seed, torch.device(device)
        )
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
    ratio = statistics.median(t / b for t, b in zip(toolkit, bare))
    return TrainerBenchmark(
        encoder=encoder,
        image_size=image_size,
        batch_size=batch_size,
        steps=steps,
        warmup=warmup,
        repeats=repeats,
        threads=used_threads,
        device=device,
        toolkit_steps_per_s=round(statistics.median(toolkit), 3),
        bare_steps_per_s=round(statistics.median(bare), 3),
        ratio=round(ratio, 3),
        toolkit_runs=[round(x, 3) for x in toolkit],
        bare_runs=[round(x, 3) for x in bare],
    )


def _interleaved_runs(
    encoder: str,
    image_size: int,
    batch_size: int,
    steps: int,
    warmup: int,
    repeats: int,
    seed: int,
    device: torch.device,
) -> tuple[list[float], list[float]]:
    """Steps/s of each repetition of both loops, the order alternating (bare first on even repetitions)."""
    from ..config import TrainConfig

    pixels, labels = synthetic_batch_data(batch_size * 4, image_size, seed)
    # log_every 5: metrics are written (and the host waits for the device) inside the timed window
    cfg = TrainConfig(
        max_steps=warmup + steps,
        batch_size=batch_size,
        checkpoint_every=0,
        log_every=5,
        warmup_steps=warmup,
        grad_clip=1.0,
    )
    toolkit, bare = [], []
    with tempfile.TemporaryDirectory(prefix="radtex-bench-trainer-") as tmp:
        for rep in range(repeats):
            for kind in ("bare", "toolkit") if rep % 2 == 0 else ("toolkit", "bare"):
                objective = make_objective(encoder, labels, seed, Path(tmp))
                if kind == "bare":
                    bare.append(bare_steps_per_s(objective, pixels, labels, cfg, steps, warmup, device, seed))
                    continue
                run_dir = Path(tmp) / f"run{rep}"
                toolkit.append(
                    toolkit_steps_per_s(objective, pixels, labels, cfg, steps, warmup, device, seed, run_dir)
                )
                shutil.rmtree(run_dir)  # the final checkpoint (written after the clock stopped)
    return toolkit, bare
