"""Small transformer text towers shared by the text-based objectives."""

from __future__ import annotations

import torch
from torch import nn

from .tokenizer import PAD_ID


class TokenEmbedding(nn.Module):
    """Token + learned position embeddings, normalised, with dropout."""

    def __init__(self, vocab_size: int, width: int, max_length: int, dropout: float = 0.1):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, width, padding_idx=PAD_ID)
        self.positions = nn.Embedding(max_length, width)
        self.norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        nn.init.normal_(self.tokens.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.tokens(ids) + self.positions(positions)[None]  # [B, L, D]
        return self.dropout(self.norm(x))


def causal_mask(length: int, device: torch.device) -> torch.Tensor:
    """Boolean mask, True where attention is forbidden: position i attends to positions <= i."""
    return torch.triu(torch.ones(length, length, dtype=torch.bool, device=device), diagonal=1)


class TextEncoder(nn.Module):
    """Bidirectional transformer encoder pooled at the ``[EOS]`` token (as in CLIP)."""

    def __init__(
        self,
        vocab_size: int,
        width: int = 256,
        layers: int = 2,
        heads: int = 4,
        max_length: int = 64,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.embed = TokenEmbedding(vocab_size, width, max_length, dropout)
        layer = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout, batch_first=True, norm_first=True, activation="gelu"
        )
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out_dim = width

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        padding = ids == PAD_ID  # [B, L]
        x = self.transformer(self.embed(ids), src_key_padding_mask=padding)  # [B, L, D]
        eos = (~padding).sum(dim=1) - 1  # index of [EOS]: the last real token
        return self.norm(x[torch.arange(ids.shape[0], device=ids.device), eos])  # [B, D]

    def token_features(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every token's feature ``[B, L, D]`` (normalised like the pooled one) and the pooled ``[B, D]``.

        For objectives that align words with image regions (``gloria``); padded positions hold
        meaningless values and must be masked by the caller (``ids == PAD_ID``).
        """
        padding = ids == PAD_ID  # [B, L]
        x = self.norm(self.transformer(self.embed(ids), src_key_padding_mask=padding))  # [B, L, D]
        eos = (~padding).sum(dim=1) - 1
        return x, x[torch.arange(ids.shape[0], device=ids.device), eos]


def transformer_decoder(
    width: int, heads: int, layers: int, dropout: float = 0.0, feedforward: int | None = None
) -> nn.TransformerDecoder:
    """Pre-norm transformer decoder layers (self-attention + cross-attention to image tokens), GELU.

    The text heads of ``masked_lm`` (bidirectional, no mask) and ``coca`` (causal) that read the
    encoder's grid as ``memory`` ``[B, h*w, width]``.
    """
    layer = nn.TransformerDecoderLayer(
        width, heads, feedforward or 4 * width, dropout, batch_first=True, norm_first=True, activation="gelu"
    )
    return nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(width))


def grid_tokens(grid: torch.Tensor) -> torch.Tensor:
    """The encoder's spatial grid ``[B, C, h, w]`` as a sequence of ``h*w`` visual tokens ``[B, h*w, C]``."""
    return grid.flatten(2).transpose(1, 2)
