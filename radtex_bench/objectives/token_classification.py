"""``token_classification``: predict the bag of report tokens from the image (VirTex's pretext task).

A linear layer on the encoder's pooled feature scores every token of the vocabulary; the target is the
set of distinct tokens of the report (special tokens excluded) as a K-hot vector with values 1/K, and
the loss is the cross-entropy between it and the softmax over the vocabulary, i.e. the mean negative
log-probability of the report's tokens (Desai & Johnson, VirTex, CVPR 2021, "token classification";
``virtex/models/classification.py``). Word order is ignored: it asks how much of captioning's benefit
survives when the report is only a multi-label target over its vocabulary.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..schema import Fraction
from ..text.tokenizer import SPECIALS
from .base import SetupContext, register_objective
from .text import MaxLength, MinFrequency, ReportTextObjective, VocabSize


def bag_of_tokens(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """``[B, L]`` token ids -> ``[B, V]`` target distribution: 1/K on each of the K distinct non-special
    tokens of the row (an all-zero row when there are none)."""
    present = torch.zeros(ids.shape[0], vocab_size, device=ids.device)
    present.scatter_(1, ids, 1.0)
    present[:, : len(SPECIALS)] = 0.0  # [PAD], [UNK], [BOS], [EOS] are not words of the report
    return present / present.sum(dim=1, keepdim=True).clamp(min=1.0)


@register_objective("token_classification")
class TokenClassificationObjective(ReportTextObjective):
    """VirTex token classification: a linear vocabulary classifier on the pooled image feature."""

    def __init__(
        self,
        encoder: nn.Module,
        dropout: Fraction = 0.0,
        max_length: MaxLength = 96,
        vocab_size: VocabSize = 4096,
        min_frequency: MinFrequency = 2,
    ):
        super().__init__(encoder, max_length, vocab_size, min_frequency)
        self.dropout = nn.Dropout(dropout)

    def setup(self, context: SetupContext) -> None:
        self.head = nn.Linear(self.encoder.out_dim, self.setup_tokenizer(context).vocab_size)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        images = batch["image"]  # [B, 3, H, W]
        logits = self.head(self.dropout(self.encoder(images))).float()  # [B, V]
        targets = bag_of_tokens(self.tokens(batch["report"], images.device), logits.shape[1])  # [B, V]
        return {"loss": F.cross_entropy(logits, targets)}
