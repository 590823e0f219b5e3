"""``masked_lm``: image-conditioned masked language modelling of the report (VirTex's pretext task).

BERT's masking (Devlin et al. 2019) on the report's tokens: each word token is chosen with probability
``mask_probability`` (at least one per report); a chosen token is replaced by ``[MASK]`` 80% of the time,
by a random token 10% and kept 10%. A bidirectional transformer (self-attention over the report,
cross-attention to the encoder's grid ``[B, h*w, width]``) predicts the chosen tokens; cross-entropy on
them only (Desai & Johnson, VirTex, CVPR 2021, "masked language modeling";
``virtex/models/masked_lm.py``). The gradient reaches the encoder only through what the image tells the
text model beyond the report's own context.

``[MASK]`` is one extra embedding row after the tokenizer's vocabulary (id ``vocab_size``); the output
layer is tied to the embedding, as in captioning.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..schema import Fraction, PositiveInt, Range
from ..text.tokenizer import PAD_ID, SPECIALS
from ..text.towers import TokenEmbedding, grid_tokens, transformer_decoder
from .base import SetupContext, register_objective
from .text import MaxLength, MinFrequency, ReportTextObjective, VocabSize, check_width_heads


def choose_masked(ids: torch.Tensor, probability: float) -> torch.Tensor:
    """``[B, L]`` bool: the word tokens to predict, each with ``probability``, at least one per row
    that has a word (specials and padding are never chosen). Draws from the global torch RNG."""
    words = ids >= len(SPECIALS)  # [B, L]
    draw = torch.rand(ids.shape, device=ids.device)
    chosen = (draw < probability) & words
    # A report left without a target would teach nothing: take its word with the smallest draw.
    lonely = words.any(dim=1) & ~chosen.any(dim=1)  # [B]
    first = draw.masked_fill(~words, 2.0).argmin(dim=1)  # [B]
    chosen[lonely, first[lonely]] = True
    return chosen


@register_objective("masked_lm")
class MaskedLMObjective(ReportTextObjective):
    """VirTex masked language modelling: predict masked report tokens from the rest and the image."""

    def __init__(
        self,
        encoder: nn.Module,
        mask_probability: Annotated[float, Range(gt=0.0, le=1.0)] = 0.15,
        layers: PositiveInt = 1,
        width: Annotated[int, Range(ge=8)] = 256,
        heads: PositiveInt = 4,
        feedforward: PositiveInt | None = None,
        dropout: Fraction = 0.1,
        max_length: MaxLength = 96,
        vocab_size: VocabSize = 4096,
        min_frequency: MinFrequency = 2,
    ):
        super().__init__(encoder, max_length, vocab_size, min_frequency)
        self.mask_probability = mask_probability
        self.layers, self.width, self.heads = layers, width, heads
        self.feedforward = feedforward
        self.dropout = dropout
        self.visual_proj = nn.Sequential(nn.Linear(encoder.out_dim, width), nn.LayerNorm(width))

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        check_width_heads(params)

    def setup(self, context: SetupContext) -> None:
        vocab = self.setup_tokenizer(context).vocab_size
        self.mask_id = vocab  # one extra row: [MASK]
        self.embedding = TokenEmbedding(vocab + 1, self.width, self.max_length, self.dropout)
        self.decoder = transformer_decoder(
            self.width, self.heads, self.layers, self.dropout, self.feedforward
        )
        self.output = nn.Linear(self.width, vocab + 1)
        self.output.weight = self.embedding.tokens.weight  # tied, as in VirTex

    def corrupt(self, ids: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """BERT's 80 / 10 / 10: ``[MASK]``, a random word token, or the token itself."""
        action = torch.rand(ids.shape, device=ids.device)
        random_ids = torch.randint(len(SPECIALS), self.mask_id, ids.shape, device=ids.device)
        inputs = torch.where(chosen & (action < 0.8), torch.full_like(ids, self.mask_id), ids)
        return torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, inputs)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        images = batch["image"]  # [B, 3, H, W]
        ids = self.tokens(batch["report"], images.device)  # [B, L]
        chosen = choose_masked(ids, self.mask_probability)  # [B, L]
        inputs = self.corrupt(ids, chosen)
        memory = self.visual_proj(grid_tokens(self.encoder.forward_features(images)))  # [B, h*w, D]
        hidden = self.decoder(self.embedding(inputs), memory, tgt_key_padding_mask=ids == PAD_ID)  # [B, L, D]
        logits = self.output(hidden).float()  # [B, L, V+1]
        targets = ids.masked_fill(~chosen, PAD_ID)  # only the chosen positions count
        # Mean over the chosen tokens, written out so that a batch without any is 0, not NaN (no host sync).
        count = chosen.sum().clamp(min=1)
        total = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD_ID, reduction="sum"
        )
        correct = ((logits.argmax(dim=-1) == ids) & chosen).sum()
        return {"loss": total / count, "masked_accuracy": (correct / count).detach()}
