"""The ``finetune`` protocol: the whole encoder plus a new multi-label head, trained end to end.

Schedule (cited in docs/evaluation.md): AdamW (encoder ``finetune.lr``, head ``finetune.head_lr``,
weight decay ``finetune.weight_decay``), cosine decay over ``max(epochs, ceil(min_steps / steps per
epoch))`` epochs of the labelled subset in batches of ``finetune.batch_size``; masked binary
cross-entropy (missing labels contribute nothing); light augmentation (crop scale 0.85-1, rotation
±5°, brightness/contrast 0.1, no flip). After every epoch the validation macro AUROC is measured; the
best epoch's weights score the test split; training stops after ``patience`` epochs without
improvement. The head initialisation, data order and augmentation use a seed separate from the subset
seed (derived from the recipe seed, objective, budget and seed index).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..data.pipeline import EpochBatchSampler, PixelSource, RadiographDataset, collate, to_model_input
from ..encoders import load_encoder
from ..objectives.simclr import xray_view_transform
from ..seeds import derive_seed
from .stats import auroc

if TYPE_CHECKING:
    from .evaluator import Cell, Evaluator


class Classifier(nn.Module):
    def __init__(self, encoder: nn.Module, n_labels: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_dim, n_labels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(images))  # [B, P]


@torch.no_grad()
def predict(
    model: Classifier, table, rows: np.ndarray, size: int, cache, device, batch_size: int
) -> np.ndarray:
    model.eval()
    dataset = RadiographDataset(PixelSource(table.take(rows), size, cache), needs=["image"])
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    out = []
    for batch in loader:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out.append(model(to_model_input(batch["image"], device)).float().cpu())
    return torch.cat(out).numpy()


def macro_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    aucs = [auroc(scores[:, j], labels[:, j]) for j in range(labels.shape[1])]
    return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")


def finetune_cell(
    evaluator: Evaluator, label: str, encoder_path: Path, budget: int, seed: int, rows: np.ndarray
) -> Cell:
    from .evaluator import Cell

    d, cfg, device = evaluator.data, evaluator.recipe.evaluation.finetune, evaluator.device
    init_seed = derive_seed(evaluator.recipe.seed, "finetune", label, budget, seed)
    torch.manual_seed(init_seed)
    model = Classifier(load_encoder(encoder_path), len(d.pathologies)).to(device)
    size, cache = d.image_size, d.cache
    train_labels = d.labels[rows]
    dataset = RadiographDataset(
        PixelSource(d.table.take(rows), size, cache),
        needs=["views", "labels"],
        labels=train_labels,
        view_transform=xray_view_transform(
            size, crop_scale=(0.85, 1.0), rotation=5, brightness=0.1, contrast=0.1, blur_probability=0.0
        ),
        n_views=1,
        seed=init_seed,
    )
    batch_size = min(cfg.batch_size, len(rows))
    sampler = EpochBatchSampler(len(rows), batch_size, init_seed)
    steps_per_epoch = sampler.batches_per_epoch
    epochs = max(cfg.epochs, math.ceil(cfg.min_steps / steps_per_epoch))
    optimizer = torch.optim.AdamW(
        [
            {"params": model.encoder.parameters(), "lr": cfg.lr},
            {"params": model.head.parameters(), "lr": cfg.head_lr},
        ],
        weight_decay=cfg.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    loader = DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate, generator=torch.Generator().manual_seed(init_seed)
    )
    val_labels = d.labels[d.val]
    best = (-math.inf, copy.deepcopy(model.state_dict()))
    stale = 0
    for epoch in range(epochs):
        model.train()
        sampler.epoch = epoch
        for batch in loader:
            images = to_model_input(batch["views"][0], device)
            labels = batch["labels"].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(images).float()
            mask = ~torch.isnan(labels)
            loss = (
                F.binary_cross_entropy_with_logits(logits, torch.nan_to_num(labels), reduction="none") * mask
            ).sum() / mask.sum().clamp(min=1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        score = macro_auc(
            predict(model, d.table, d.val, size, cache, device, evaluator.recipe.evaluation.batch_size),
            val_labels,
        )
        if not math.isfinite(score):  # validation cannot rank epochs: keep the latest weights
            best = (best[0], copy.deepcopy(model.state_dict()))
        elif score > best[0] + 1e-6:
            best, stale = (score, copy.deepcopy(model.state_dict())), 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    model.load_state_dict(best[1])
    scores = predict(model, d.table, d.test, size, cache, device, evaluator.recipe.evaluation.batch_size)
    aucs = np.full(len(d.pathologies), np.nan)
    for j in range(len(d.pathologies)):
        known = ~np.isnan(train_labels[:, j])
        if len(np.unique(train_labels[known, j])) < 2:
            scores[:, j] = np.nan  # no positive (or no negative) to learn from: missing, as for linear
            continue
        aucs[j] = auroc(scores[:, j], d.labels[d.test, j])
    return Cell(label, "finetune", budget, seed, aucs, scores.astype(np.float32))
