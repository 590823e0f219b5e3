"""Losses shared by pretraining objectives and evaluation protocols."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_bce(
    logits: torch.Tensor, labels: torch.Tensor, pos_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean binary cross-entropy over the labels that exist.

    ``logits`` and ``labels`` are ``[B, P]``; NaN labels (missing, or uncertain under ``uncertain:
    ignore``) contribute nothing. ``pos_weight`` ``[P]`` weights positives (torch's convention). Returns a
    scalar; 0 when no label exists in the batch.
    """
    mask = ~torch.isnan(labels)
    losses = F.binary_cross_entropy_with_logits(
        logits.float(), torch.nan_to_num(labels), reduction="none", pos_weight=pos_weight
    )  # [B, P]
    return (losses * mask).sum() / mask.sum().clamp(min=1)
