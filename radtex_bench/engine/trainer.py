"""One training loop for every objective.

The loop owns what objectives should not: device placement, mixed precision, DDP, gradient
accumulation and clipping, the optimiser and schedule, checkpoints, metrics and progress. Objectives
only map a batch to ``{"loss": ...}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..config import TrainConfig
from ..data.pipeline import EpochBatchSampler, RadiographDataset, collate, to_model_input
from ..errors import Interrupted, UserError
from ..io import append_jsonl, read_jsonl, write_text
from ..ui import progress
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .distributed import DistInfo
from .optim import build_optimizer, build_scheduler

log = logging.getLogger("radtex_bench")


@dataclass
class Position:
    step: int = 0  # optimiser steps done
    epoch: int = 0
    batch: int = 0  # micro-batches consumed in ``epoch``


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or device.type == "cuda":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    return None


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
    def __init__(self, objective: nn.Module, dataset: RadiographDataset, cfg: TrainConfig, out_dir: Path,
                 device: torch.device, dist: DistInfo, seed: int, workers: int, label: str):
        self.objective = objective
        self.dataset = dataset
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.device = device
        self.dist = dist
        self.seed = seed
        self.workers = workers
        self.label = label
        self.ckpt_path = self.out_dir / "last.ckpt"
        self.metrics_path = self.out_dir / "metrics.jsonl"
        self.amp_dtype = autocast_dtype(cfg.precision, device)
        self.channels_last = device.type == "cuda"

        objective.to(device)
        if self.channels_last:
            objective.encoder.to(memory_format=torch.channels_last)
        self.model: nn.Module = objective
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(
                objective, device_ids=[device.index] if device.type == "cuda" else None,
                broadcast_buffers=False,
            )
        if cfg.compile:
            self.model = torch.compile(self.model)
        self.optimizer = build_optimizer(objective, objective.encoder, cfg, fused=device.type == "cuda")
        self.sampler = EpochBatchSampler(len(dataset), cfg.batch_size, seed, rank=dist.rank,
                                         world_size=dist.world_size)
        self.steps_per_epoch = self.sampler.batches_per_epoch // cfg.grad_accum
        if self.steps_per_epoch == 0:
            raise UserError(
                f"objective '{label}': one epoch has {self.sampler.batches_per_epoch} batches, fewer than "
                f"train.grad_accum={cfg.grad_accum}; lower grad_accum or batch_size"
            )
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self.scheduler = build_scheduler(self.optimizer, cfg, self.total_steps)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype is torch.float16)
        self.pos = Position()

    # -- state -------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "position": {"step": self.pos.step, "epoch": self.pos.epoch, "batch": self.pos.batch},
            "total_steps": self.total_steps,
            "model": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
        }

    def save(self) -> None:
        if self.dist.is_main:
            save_checkpoint(self.ckpt_path, self.state())
        self.dist.barrier()

    def restore(self) -> bool:
        if not self.ckpt_path.exists():
            return False
        state = load_checkpoint(self.ckpt_path)
        self.objective.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.pos = Position(**state["position"])
        if self.dist.is_main:  # drop metrics logged after the checkpoint: they will be logged again
            kept = [m for m in read_jsonl(self.metrics_path) if m.get("step", 0) <= self.pos.step]
            write_text(self.metrics_path, "".join(json.dumps(m) + "\n" for m in kept))
        log.info("%s: resumed from %s at step %d (epoch %d, batch %d)", self.label, self.ckpt_path,
                 self.pos.step, self.pos.epoch, self.pos.batch)
        return True

    # -- loop --------------------------------------------------------------------------------------

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
        if "image" in batch:
            out["image"] = to_model_input(batch["image"], self.device, self.channels_last)
        if "views" in batch:
            out["views"] = [to_model_input(v, self.device, self.channels_last) for v in batch["views"]]
        if "labels" in batch:
            out["labels"] = batch["labels"].to(self.device, non_blocking=True)
        return out

    def _forward_backward(self, batch: dict[str, Any], sync: bool) -> dict[str, torch.Tensor]:
        no_sync = self.model.no_sync if (self.dist.enabled and not sync and hasattr(self.model, "no_sync")) \
            else contextlib.nullcontext
        with no_sync():
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                out = self.model(batch)
            loss = out["loss"]
            if loss.ndim != 0:
                raise UserError(f"objective '{self.label}' returned a loss of shape {tuple(loss.shape)}; "
                                "forward() must return a scalar under 'loss'")
            self.scaler.scale(loss / self.cfg.grad_accum).backward()
        return out

    def _optimizer_step(self) -> float:
        self.scaler.unscale_(self.optimizer)
        grad_norm = float("nan")
        if self.cfg.grad_clip is not None:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def fit(self, resume: bool = False) -> None:
        if resume:
            self.restore()
        elif self.dist.is_main and self.metrics_path.exists():
            self.metrics_path.unlink()
        if self.pos.step >= self.total_steps:
            return
        self.objective.train()
        accum = self.cfg.grad_accum
        batches_per_epoch = self.steps_per_epoch * accum
        log.info("%s: training %d steps (%d per epoch) on %s, batch %d x %d process(es), precision %s",
                 self.label, self.total_steps, self.steps_per_epoch, self.device, self.cfg.batch_size,
                 self.dist.world_size, self.amp_dtype or "fp32")
        window: dict[str, Any] = {"loss": [], "images": 0, "start": time.perf_counter(), "parts": {}}
        with progress(self.dist.is_main) as bar, _StopSignal() as stop:
            task = bar.add_task(f"pretrain {self.label}", total=self.total_steps, completed=self.pos.step, info="")
            loader = self._loader()
            while self.pos.step < self.total_steps:
                self.sampler.epoch, self.sampler.start_batch = self.pos.epoch, self.pos.batch
                self.sampler.stop_batch = batches_per_epoch  # leftovers short of a full step are dropped
                for batch in loader:
                    micro = self.pos.batch % accum
                    out = self._forward_backward(self._to_device(batch), sync=micro == accum - 1)
                    self.pos.batch += 1
                    window["images"] += len(batch["index"]) * self.dist.world_size
                    window["loss"].append(out["loss"].detach())
                    for key, value in out.items():
                        if key != "loss" and torch.is_tensor(value) and value.ndim == 0:
                            window["parts"].setdefault(key, []).append(value.detach())
                    if micro == accum - 1:
                        grad_norm = self._optimizer_step()
                        self.pos.step += 1
                        if self.pos.step % self.cfg.log_every == 0 or self.pos.step == self.total_steps:
                            info = self._log(window, grad_norm)
                            bar.update(task, info=info)
                        bar.update(task, completed=self.pos.step)
                        done = self.pos.step >= self.total_steps
                        if self.pos.batch >= batches_per_epoch:
                            self.pos.epoch, self.pos.batch = self.pos.epoch + 1, 0
                        every = self.cfg.checkpoint_every
                        if stop.raised is not None or done or (every and self.pos.step % every == 0):
                            self.save()
                        if stop.raised is not None:
                            raise Interrupted(signal.Signals(stop.raised).name)
                        if done or self.pos.batch == 0:
                            break
                if self.pos.batch != 0 and self.pos.step < self.total_steps:  # loader ran dry mid-epoch
                    self.pos.epoch, self.pos.batch = self.pos.epoch + 1, 0

    def _log(self, window: dict[str, Any], grad_norm: float) -> str:
        elapsed = time.perf_counter() - window["start"]
        loss = torch.stack(window["loss"]).float().mean().item()
        if not math.isfinite(loss):
            raise UserError(
                f"objective '{self.label}' diverged at step {self.pos.step} (loss={loss}); lower "
                f"objectives.*.train.lr (now {self.cfg.lr}) or add warmup_steps"
            )
        record = {
            "step": self.pos.step,
            "epoch": self.pos.epoch,
            "loss": round(loss, 6),
            **{k: round(torch.stack(v).float().mean().item(), 6) for k, v in window["parts"].items()},
            "lr": self.optimizer.param_groups[0]["lr"],
            "grad_norm": None if not math.isfinite(float(grad_norm)) else round(float(grad_norm), 4),
            "images_per_s": round(window["images"] / max(elapsed, 1e-9), 2),
            "peak_mem_mb": round(peak_memory_mb(self.device), 1),
            "time": time.time(),
        }
        if self.dist.is_main:
            append_jsonl(self.metrics_path, record)
        window.update({"loss": [], "images": 0, "start": time.perf_counter(), "parts": {}})
        return f"loss {loss:.3f} | {record['images_per_s']:.0f} img/s | {record['peak_mem_mb']:.0f} MB"
