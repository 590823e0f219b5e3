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
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ...data.augment import FINETUNE_AUGMENT
from ...data.normalization import input_normalization
from ...data.pipeline import EpochBatchSampler, PixelSource, RadiographDataset, collate, to_model_input
from ...engine.inference import predict
from ...engine.precision import autocast
from ...errors import UserError
from ...losses import masked_bce
from ...schema import option
from ...seeds import derive_seed
from ..stats import macro_auroc
from .base import Cell, CellTask, Protocol, register_protocol


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = option(30, ge=1, le=10_000, help="maximum epochs over the labelled subset")
    batch_size: int = option(
        32, ge=2, help="images per step (BatchNorm needs 2; a smaller subset is one batch of all its images)"
    )
    lr: float = option(1e-4, gt=0.0, le=10.0, help="peak learning rate of the encoder (AdamW, cosine)")
    head_lr: float = option(1e-3, gt=0.0, le=10.0, help="learning rate of the new classification head")
    weight_decay: float = option(1e-4, ge=0.0, le=10.0)
    patience: int = option(5, ge=1, help="epochs without a better validation macro AUROC before stopping")
    min_steps: int = option(50, ge=0, help="train at least this many steps, however small the budget")


class Classifier(nn.Module):
    def __init__(self, encoder: nn.Module, n_labels: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_dim, n_labels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(images))  # [B, P]


@register_protocol("finetune")
class FinetuneProtocol(Protocol):
    """The whole encoder plus a new multi-label head, trained end to end on the labelled subset."""

    Config = FinetuneConfig
    description = "the whole encoder and a new head trained end to end (early stopping on validation)"

    def _predict(self, model: Classifier, rows: np.ndarray) -> np.ndarray:
        d = self.data
        model.eval()
        return predict(
            model, len(d.pathologies), d.table.take(rows), d.image_size, self.device, self.batch_size, d.cache
        )

    def run(self, task: CellTask) -> Cell:
        d, cfg, device, rows = self.data, self.config, self.device, task.rows
        init_seed = derive_seed(self.seed, "finetune", task.encoder.label, task.budget, task.seed)
        torch.manual_seed(init_seed)
        model = Classifier(task.encoder.load_encoder(), len(d.pathologies)).to(device)
        normalization = input_normalization(model)  # the encoder's own (its weights' metadata)
        size, cache = d.image_size, d.cache
        dataset = RadiographDataset(
            PixelSource(d.table.take(rows), size, cache),
            needs=["views", "labels"],
            labels=d.labels[rows],
            view_transform=FINETUNE_AUGMENT.per_image(size),
            n_views=1,
            seed=init_seed,
        )
        # Budgets are >= 2 and batch_size >= 2, so no step ever sees a single image (BatchNorm).
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
            dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(init_seed),
        )
        val_labels = d.labels[d.val]
        best = (-math.inf, copy.deepcopy(model.state_dict()))
        stale = 0
        for epoch in range(epochs):
            model.train()
            sampler.epoch = epoch
            for batch in loader:
                images = to_model_input(batch["views"][0], device, normalization=normalization)
                with autocast(device):
                    logits = model(images).float()
                loss = masked_bce(logits, batch["labels"].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
            val_scores = self._predict(model, d.val)  # [N_val, P]
            if not np.isfinite(val_scores).all():
                raise UserError(
                    f"evaluation.finetune: fine-tuning '{task.encoder.label}' diverged in epoch {epoch + 1} of "
                    f"budget {task.budget} (non-finite scores); lower evaluation.finetune.lr (now {cfg.lr}), "
                    f"head_lr (now {cfg.head_lr}) or weight_decay (now {cfg.weight_decay}) and --resume"
                )
            score = macro_auroc(val_scores, val_labels)
            if not math.isfinite(score):  # validation cannot rank epochs: keep the latest weights
                best = (best[0], copy.deepcopy(model.state_dict()))
            elif score > best[0] + 1e-6:
                best, stale = (score, copy.deepcopy(model.state_dict())), 0
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
        model.load_state_dict(best[1])
        scores = self._predict(model, d.test)
        scores[:, ~self.learnable(rows)] = np.nan  # no positive (or no negative) to learn from: missing
        return self.cell(task, scores)
