"""``supervised``: in-domain multi-label supervised pretraining on the pretraining split's labels.

A linear head on the pooled features is trained with binary cross-entropy masked to the labels that
exist (missing labels, and uncertain ones under ``uncertain: ignore``, contribute nothing). The head is
discarded afterwards; only the encoder is evaluated. Labels come from the pretraining split only,
never from validation or test patients.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..losses import masked_bce
from ..schema import Fraction
from .base import Objective, SetupContext, register_objective


@register_objective("supervised")
class SupervisedObjective(Objective):
    needs = {"image", "labels"}

    def __init__(self, encoder: nn.Module, dropout: Fraction = 0.0, balance: bool = False):
        super().__init__(encoder)
        self.dropout = nn.Dropout(dropout)
        self.balance = balance

    def setup(self, context: SetupContext) -> None:
        labels = np.asarray(context.labels, dtype=np.float32)
        known = ~np.isnan(labels)
        if not known.any():
            raise UserError(
                "objective supervised: the pretraining split has no labels for "
                f"{', '.join(context.pathologies)}; use a labelled dataset or drop this objective"
            )
        self.head = nn.Linear(self.encoder.out_dim, labels.shape[1])
        positives = np.nansum(labels, axis=0)
        negatives = known.sum(axis=0) - positives
        # Optional per-pathology positive weight (negatives / positives) for rare findings.
        weight = (
            np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
            if self.balance
            else np.ones_like(positives)
        )
        self.register_buffer("pos_weight", torch.tensor(weight, dtype=torch.float32), persistent=False)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        logits = self.head(self.dropout(self.encoder(batch["image"])))  # [B, P]
        return {"loss": masked_bce(logits, batch["labels"], self.pos_weight)}  # labels [B, P], NaN = missing
