"""Optimiser and schedule: AdamW with encoder / head learning rates, warmup then cosine decay."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TrainConfig

#: Learned tokens and position embeddings of ViTs (timm's ``no_weight_decay()``): no weight decay.
_VIT_TOKENS = frozenset({"pos_embed", "cls_token", "reg_token", "dist_token"})


def _split_decay(params: list[tuple[str, nn.Parameter]]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Biases, norm weights, embeddings' positions, a ViT's tokens and scalars get no weight decay."""
    decay, no_decay = [], []
    for name, p in params:
        if not p.requires_grad:
            continue
        exempt = p.ndim <= 1 or name.endswith(".bias") or "positions" in name
        (no_decay if exempt or name.rsplit(".", 1)[-1] in _VIT_TOKENS else decay).append(p)
    return decay, no_decay


def param_groups(model: nn.Module, encoder: nn.Module, cfg: TrainConfig) -> list[dict]:
    encoder_ids = {id(p) for p in encoder.parameters()}
    named = list(model.named_parameters())
    enc = [(n, p) for n, p in named if id(p) in encoder_ids]
    head = [(n, p) for n, p in named if id(p) not in encoder_ids]
    encoder_lr = cfg.encoder_lr if cfg.encoder_lr is not None else cfg.lr
    groups = []
    for members, lr, tag in ((enc, encoder_lr, "encoder"), (head, cfg.lr, "head")):
        decay, no_decay = _split_decay(members)
        if decay:
            groups.append({"params": decay, "lr": lr, "weight_decay": cfg.weight_decay, "name": f"{tag}"})
        if no_decay:
            groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": f"{tag}_no_decay"})
    return groups


def build_optimizer(
    model: nn.Module, encoder: nn.Module, cfg: TrainConfig, fused: bool = False
) -> torch.optim.Optimizer:
    kwargs = {"fused": True} if fused else {}
    return torch.optim.AdamW(param_groups(model, encoder, cfg), betas=(0.9, 0.98), eps=1e-6, **kwargs)


def warmup_cosine(warmup_steps: int, total_steps: int):
    """Multiplier of the peak learning rate at optimiser step ``step`` (0-based)."""

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.warmup_steps, total_steps))
