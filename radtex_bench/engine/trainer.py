"""One training loop for every objective.

The loop owns what objectives should not: device placement, mixed precision, DDP, gradient
accumulation and clipping, the optimiser and schedule, checkpoints, metrics and progress. Objectives
only map a batch to ``{"loss": ...}``.

Speed: the steady-state loop never waits for the GPU. Losses stay on the device until a logging step
(one ``.tolist()`` every ``log_every`` steps), copies from pinned memory are non-blocking, and under DDP the
ranks only agree on stopping at logging and checkpoint steps. ``radtex-bench bench trainer`` measures
what the loop costs against a bare PyTorch loop (docs/performance.md).

Exact resume: ``last.ckpt`` holds the model, optimiser, scheduler, grad scaler, every RNG (of every
rank) and the data position; batches are keyed by (epoch, index) and augmentations seeded by them, so a
resumed run continues with the very batches, views and dropout masks the uninterrupted run would have
used.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import resource
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..config import TrainConfig
from ..data.normalization import input_normalization
from ..data.pipeline import EpochBatchSampler, RadiographDataset, collate, to_model_input
from ..errors import Interrupted, UserError
from ..io import append_jsonl, read_jsonl, write_text
from ..rundir import CHECKPOINT_FILE, METRICS_FILE
from ..seeds import derive_seed
from ..ui import progress
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .distributed import DistInfo, all_gather_objects, all_mean, any_rank, broadcast_buffers
from .optim import build_optimizer, build_scheduler
from .precision import autocast_dtype

log = logging.getLogger("radtex_bench")

#: Called after every optimiser step with the trainer (benchmarks time steps with it).
StepHook = Callable[["Trainer"], None]
#: Called on rank 0 with each record written to metrics.jsonl (experiment trackers); only at logging
#: steps, so the steps in between carry no tracker work.
MetricsHook = Callable[[dict[str, Any]], None]


@dataclass
class Position:
    step: int = 0  # optimiser steps done
    epoch: int = 0
    batch: int = 0  # micro-batches consumed in ``epoch``


@dataclass
class _Window:
    """What happened since the last metrics line; values stay on the device until it is written."""

    losses: list[torch.Tensor] = field(default_factory=list)
    parts: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    images: int = 0
    start: float = field(default_factory=time.perf_counter)

    def add(self, out: dict[str, torch.Tensor], images: int) -> None:
        self.losses.append(out["loss"].detach())
        for key, value in out.items():
            if key != "loss" and torch.is_tensor(value) and value.ndim == 0:
                self.parts.setdefault(key, []).append(value.detach())
        self.images += images


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class _StopSignal:
    """Turn SIGINT/SIGTERM into a flag checked at step boundaries (only in the main thread)."""

    def __init__(self) -> None:
        self.raised: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopSignal:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.raised is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.raised = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


class Trainer:
    """Trains ``objective`` on ``dataset`` for ``cfg`` and keeps ``out_dir/last.ckpt`` resumable."""

    def __init__(
        self,
        objective: nn.Module,
        dataset: RadiographDataset,
        cfg: TrainConfig,
        out_dir: Path,
        device: torch.device,
        dist: DistInfo,
        seed: int,
        workers: int,
        label: str,
        step_hook: StepHook | None = None,
        metrics_hook: MetricsHook | None = None,
    ):
        self.objective = objective
        self.dataset = dataset
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.device = device
        self.dist = dist
        self.seed = seed
        self.workers = workers
        self.label = label
        self.step_hook = step_hook
        self.metrics_hook = metrics_hook
        self.ckpt_path = self.out_dir / CHECKPOINT_FILE
        self.metrics_path = self.out_dir / METRICS_FILE
        self.amp_dtype = autocast_dtype(cfg.precision, device)
        self.channels_last = device.type == "cuda"
        # The encoder's input normalisation (ImageNet unless its weights came with their own).
        self.normalization = input_normalization(objective.encoder)
        self.needs = set(getattr(objective, "needs", {"image"}))
        self.view_augment = getattr(dataset, "view_augment", None)

        self.model = self._wrap(objective)
        self.optimizer = build_optimizer(objective, objective.encoder, cfg, fused=device.type == "cuda")
        self.sampler = EpochBatchSampler(
            len(dataset), cfg.batch_size, seed, rank=dist.rank, world_size=dist.world_size
        )
        self.steps_per_epoch = self.sampler.batches_per_epoch // cfg.grad_accum
        if self.steps_per_epoch == 0:
            raise UserError(
                f"objective '{label}': one epoch has {self.sampler.batches_per_epoch} batches, fewer than "
                f"train.grad_accum={cfg.grad_accum}; lower grad_accum or batch_size"
            )
        self.batches_per_epoch = (
            self.steps_per_epoch * cfg.grad_accum
        )  # leftovers short of a step are dropped
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self.scheduler = build_scheduler(self.optimizer, cfg, self.total_steps)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype is torch.float16)
        self.pos = Position()
        self.window = _Window()
        self.grad_norm: torch.Tensor | float = float("nan")
        self.step_lrs: dict[str, float] = {}  # learning rate of each group in the last step

    def _wrap(self, objective: nn.Module) -> nn.Module:
        """Device, memory format, DDP and ``torch.compile``; returns the module to call."""
        objective.to(self.device)
        if self.device.type == "cuda":
            objective.encoder.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True  # fixed input sizes: pick the fastest kernels once
        model: nn.Module = objective
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            # Buffers (BatchNorm statistics) stay per rank while training and are aligned at the end.
            model = DistributedDataParallel(
                objective,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False,
            )
        if self.cfg.compile:
            model = torch.compile(model)
        return model

    # -- state -------------------------------------------------------------------------------------

    def state(self, rngs: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "label": self.label,
            "position": {"step": self.pos.step, "epoch": self.pos.epoch, "batch": self.pos.batch},
            "total_steps": self.total_steps,
            "world_size": self.dist.world_size,
            "model": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rngs[0],
            "rng_per_rank": rngs,
        }

    def save(self) -> None:
        """Every rank's RNG goes into rank 0's atomic ``last.ckpt``; the others wait for it."""
        rngs = all_gather_objects(rng_state(), self.dist)
        if self.dist.is_main:
            save_checkpoint(self.ckpt_path, self.state(rngs))
        self.dist.barrier()

    def restore(self) -> bool:
        if not self.ckpt_path.exists():
            return False
        state = load_checkpoint(self.ckpt_path)
        self.objective.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        rngs = state.get("rng_per_rank") or [state["rng"]]
        if len(rngs) != self.dist.world_size:
            log.warning(
                "%s: checkpoint written by %d process(es), resumed with %d: random streams restart, so "
                "the continuation is not bit-identical",
                self.label,
                len(rngs),
                self.dist.world_size,
            )
            set_rng_state(rngs[0])
            self._seed_rank()
        else:
            set_rng_state(rngs[self.dist.rank])
        self.pos = Position(**state["position"])
        if self.dist.is_main:  # drop metrics logged after the checkpoint: they will be logged again
            kept = [m for m in read_jsonl(self.metrics_path) if m.get("step", 0) <= self.pos.step]
            write_text(self.metrics_path, "".join(json.dumps(m) + "\n" for m in kept))
        log.info(
            "%s: resumed from %s at step %d (epoch %d, batch %d)",
            self.label,
            self.ckpt_path,
            self.pos.step,
            self.pos.epoch,
            self.pos.batch,
        )
        return True

    def _seed_rank(self) -> None:
        """Under DDP each rank draws its own dropout masks (one process keeps the objective's stream)."""
        if self.dist.enabled:
            torch.manual_seed(derive_seed(self.seed, "rank", self.dist.rank))

    # -- one micro-batch ---------------------------------------------------------------------------

    def _loader(self) -> DataLoader:
        workers = self.workers
        return DataLoader(
            self.dataset,
            batch_sampler=self.sampler,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
            # A private generator: creating a loader must not consume the global RNG (exact resume).
            generator=torch.Generator().manual_seed(self.seed),
        )

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = dict(batch)
        if "view_params" in batch:
            out.pop("view_params")
            out["views"] = self._device_views(batch["image"], batch["view_params"])
            if "image" not in self.needs:
                del out["image"]
        if "image" in out:
            out["image"] = to_model_input(batch["image"], self.device, self.channels_last, self.normalization)
        if "views" in batch:
            out["views"] = [
                to_model_input(v, self.device, self.channels_last, self.normalization) for v in batch["views"]
            ]
        if "labels" in batch:
            out["labels"] = batch["labels"].to(self.device, non_blocking=True)
        return out

    def _device_views(self, pixels: torch.Tensor, params: torch.Tensor) -> list[torch.Tensor]:
        """The batched augmentation on the training device: uint8 ``[B, 1, S, S]`` -> float views."""
        pixels = pixels.to(self.device, non_blocking=True)  # [B, 1, S, S] uint8
        params = params.to(self.device, non_blocking=True)  # [B, V, N_PARAMS]
        return [
            to_model_input(
                self.view_augment(pixels, params[:, v]), None, self.channels_last, self.normalization
            )
            for v in range(params.shape[1])
        ]

    def _forward_backward(self, batch: dict[str, Any], sync: bool) -> dict[str, torch.Tensor]:
        skip_sync = self.dist.enabled and not sync and hasattr(self.model, "no_sync")
        with self.model.no_sync() if skip_sync else contextlib.nullcontext():
            with torch.autocast(
                self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
            ):
                out = self.model(batch)
            loss = out["loss"]
            if loss.ndim != 0:
                raise UserError(
                    f"objective '{self.label}' returned a loss of shape {tuple(loss.shape)}; "
                    "forward() must return a scalar under 'loss'"
                )
            self.scaler.scale(loss / self.cfg.grad_accum).backward()
        return out

    def _optimizer_step(self) -> None:
        self.scaler.unscale_(self.optimizer)
        if self.cfg.grad_clip is not None:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            self.grad_norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)  # stays on the device
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step_lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(self.optimizer.param_groups)}
        with warnings.catch_warnings():
            # fp16: GradScaler skips the optimiser step when gradients overflow (its first steps, while it
            # finds the scale); the schedule still advances one step per batch, as intended, so torch's
            # "lr_scheduler.step() before optimizer.step()" warning is noise here.
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _train_micro_batch(self, batch: dict[str, Any]) -> bool:
        """Forward and backward one micro-batch; True when it completed an optimiser step."""
        accum = self.cfg.grad_accum
        last = self.pos.batch % accum == accum - 1
        out = self._forward_backward(self._to_device(batch), sync=last)
        self.pos.batch += 1
        self.window.add(out, len(batch["index"]) * self.dist.world_size)
        if not last:
            return False
        self._optimizer_step()
        self.pos.step += 1
        self.objective.after_step(self.pos.step, self.total_steps)
        if self.pos.batch >= self.batches_per_epoch:
            self.pos.epoch, self.pos.batch = self.pos.epoch + 1, 0
        return True

    # -- the loop ----------------------------------------------------------------------------------

    def fit(self, resume: bool = False) -> None:
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        if not (resume and self.restore()):
            self._seed_rank()
            if self.dist.is_main and self.metrics_path.exists():
                self.metrics_path.unlink()
        if self.pos.step >= self.total_steps:
            return
        self.objective.train()
        log.info(
            "%s: training %d steps (%d per epoch) on %s, batch %d x %d process(es), precision %s",
            self.label,
            self.total_steps,
            self.steps_per_epoch,
            self.device,
            self.cfg.batch_size,
            self.dist.world_size,
            self.amp_dtype or "fp32",
        )
        self.window = _Window()
        with progress(self.dist.is_main) as bar, _StopSignal() as stop:
            task = bar.add_task(
                f"pretrain {self.label}", total=self.total_steps, completed=self.pos.step, info=""
            )
            loader = self._loader()
            while self.pos.step < self.total_steps:
                self.sampler.epoch, self.sampler.start_batch = self.pos.epoch, self.pos.batch
                self.sampler.stop_batch = self.batches_per_epoch
                for batch in loader:
                    if self._train_micro_batch(batch) and self._after_step(bar, task, stop):
                        break
                if self.pos.batch != 0 and self.pos.step < self.total_steps:  # loader ran dry mid-epoch
                    self.pos.epoch, self.pos.batch = self.pos.epoch + 1, 0
        broadcast_buffers(self.objective, self.dist)

    def _after_step(self, bar: Any, task: Any, stop: _StopSignal) -> bool:
        """Hook, metrics, checkpoint and stop requests after an optimiser step; True ends the epoch pass."""
        if self.step_hook is not None:
            self.step_hook(self)
        done = self.pos.step >= self.total_steps
        logging_step = done or self.pos.step % self.cfg.log_every == 0
        if logging_step:
            bar.update(task, info=self._log())
        bar.update(task, completed=self.pos.step)
        every = self.cfg.checkpoint_every
        checkpoint_step = done or bool(every and self.pos.step % every == 0)
        # One process checks its flag every step; ranks agree only where they synchronise anyway.
        stopping = (
            stop.raised is not None
            if not self.dist.enabled
            else (
                (logging_step or checkpoint_step)
                and any_rank(stop.raised is not None, self.dist, self.device)
            )
        )
        if checkpoint_step or stopping:
            self.save()
        if stopping:
            raise Interrupted(signal.Signals(stop.raised or signal.SIGTERM).name)
        return done or self.pos.batch == 0

    def _log(self) -> str:
        window = self.window
        elapsed = time.perf_counter() - window.start
        keys = list(window.parts)
        means = torch.stack(
            [torch.stack(window.losses).float().mean()]
            + [torch.stack(window.parts[k]).float().mean() for k in keys]
        )
        values = all_mean(means, self.dist).tolist()  # the one host sync of the window
        loss = values[0]
        if not math.isfinite(loss):
            raise UserError(
                f"objective '{self.label}' diverged at step {self.pos.step} (loss={loss}); lower "
                f"objectives.*.train.lr (now {self.cfg.lr}) or add warmup_steps"
            )
        grad_norm = float(self.grad_norm)
        record = {
            "step": self.pos.step,
            "epoch": self.pos.epoch,
            "loss": round(loss, 6),
            **{k: round(v, 6) for k, v in zip(keys, values[1:])},
            "lr": self.step_lrs.get("encoder", next(iter(self.step_lrs.values()), None)),
            "head_lr": self.step_lrs.get("head"),
            "grad_norm": round(grad_norm, 4) if math.isfinite(grad_norm) else None,
            "images_per_s": round(window.images / max(elapsed, 1e-9), 2),
            "peak_mem_mb": round(peak_memory_mb(self.device), 1),
            "time": time.time(),
        }
        if self.dist.is_main:
            append_jsonl(self.metrics_path, record)
            if self.metrics_hook is not None:
                self.metrics_hook(record)
        self.window = _Window()
        return f"loss {loss:.3f} | {record['images_per_s']:.0f} img/s | {record['peak_mem_mb']:.0f} MB"
