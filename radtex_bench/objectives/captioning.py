"""``captioning``: RadTex / VirTex image captioning as pretraining.

The encoder's spatial grid ``[B, C, h, w]`` is projected to the decoder width and used as the memory of
a transformer decoder that predicts the report token by token. With ``bidirectional: true`` a second
decoder reads the report right-to-left; both share the token embedding and the output layer (tied to
the embedding), and their losses are summed (VirTex, Desai & Johnson 2021; RadTex, Quigley et al. 2022).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..text.tokenizer import BOS_ID, EOS_ID, PAD_ID, ReportTokenizer, shared_tokenizer
from ..text.towers import TokenEmbedding, causal_mask
from .base import Objective, SetupContext, register_objective


def reverse_tokens(ids: torch.Tensor) -> torch.Tensor:
    """``[BOS] t1..tn [EOS] PAD..`` -> ``[BOS] tn..t1 [EOS] PAD..`` row by row."""
    lengths = (ids != PAD_ID).sum(dim=1)  # [B] including BOS and EOS
    positions = torch.arange(ids.shape[1], device=ids.device)[None]  # [1, L]
    inner = (positions >= 1) & (positions < (lengths - 1)[:, None])  # the t1..tn slots
    source = torch.where(inner, lengths[:, None] - 1 - positions, positions)  # mirror inside the span
    return ids.gather(1, source)


@register_objective("captioning")
class CaptioningObjective(Objective):
    needs = {"image", "report"}

    def __init__(
        self,
        encoder: nn.Module,
        bidirectional: bool = True,
        decoder_layers: int = 1,
        width: int = 256,
        heads: int = 4,
        feedforward: int | None = None,
        dropout: float = 0.1,
        max_length: int = 96,
        vocab_size: int = 4096,
        min_frequency: int = 2,
        label_smoothing: float = 0.0,
    ):
        super().__init__(encoder)
        if width % heads:
            raise ValueError(f"width ({width}) must be divisible by heads ({heads})")
        self.bidirectional = bidirectional
        self.decoder_layers = decoder_layers
        self.width = width
        self.heads = heads
        self.feedforward = feedforward or 4 * width
        self.dropout = dropout
        self.max_length = max_length
        self.vocab_size_target = vocab_size
        self.min_frequency = min_frequency
        self.label_smoothing = label_smoothing
        self.visual_proj = nn.Sequential(nn.Linear(encoder.out_dim, width), nn.LayerNorm(width))
        self.tokenizer: ReportTokenizer | None = None

    def _decoder(self) -> nn.TransformerDecoder:
        layer = nn.TransformerDecoderLayer(
            self.width,
            self.heads,
            self.feedforward,
            self.dropout,
            batch_first=True,
            norm_first=True,
            activation="gelu",
        )
        return nn.TransformerDecoder(layer, self.decoder_layers, norm=nn.LayerNorm(self.width))

    def setup(self, context: SetupContext) -> None:
        self.tokenizer = shared_tokenizer(
            context.out_dir,
            context.reports,
            self.vocab_size_target,
            self.min_frequency,
            context.rank,
            context.barrier,
        )
        vocab = self.tokenizer.vocab_size
        self.embedding = TokenEmbedding(vocab, self.width, self.max_length, self.dropout)
        self.forward_decoder = self._decoder()
        self.backward_decoder = self._decoder() if self.bidirectional else None
        self.output = nn.Linear(self.width, vocab)
        self.output.weight = self.embedding.tokens.weight  # tied, as in VirTex

    def memory(self, images: torch.Tensor) -> torch.Tensor:
        grid = self.encoder.forward_features(images)  # [B, C, h, w]
        return self.visual_proj(grid.flatten(2).transpose(1, 2))  # [B, h*w, D]

    def _caption_loss(
        self, decoder: nn.TransformerDecoder, ids: torch.Tensor, memory: torch.Tensor
    ) -> torch.Tensor:
        inputs, targets = ids[:, :-1], ids[:, 1:]  # [B, L-1] each
        length = inputs.shape[1]
        hidden = decoder(
            self.embedding(inputs),
            memory,
            tgt_mask=causal_mask(length, ids.device),
            tgt_key_padding_mask=inputs == PAD_ID,
            tgt_is_causal=True,
        )  # [B, L-1, D]
        logits = self.output(hidden)  # [B, L-1, V]
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),
            targets.reshape(-1),
            ignore_index=PAD_ID,
            label_smoothing=self.label_smoothing,
        )

    def tokens(self, reports: list[str], device: torch.device) -> torch.Tensor:
        return self.tokenizer.batch(reports, self.max_length).to(device, non_blocking=True)  # [B, L]

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        images = batch["image"]  # [B, 3, H, W]
        ids = self.tokens(batch["report"], images.device)  # [B, L]
        memory = self.memory(images)  # [B, h*w, D]
        out = {"forward_loss": self._caption_loss(self.forward_decoder, ids, memory)}
        loss = out["forward_loss"]
        if self.backward_decoder is not None:
            out["backward_loss"] = self._caption_loss(self.backward_decoder, reverse_tokens(ids), memory)
            loss = loss + out["backward_loss"]
        out["loss"] = loss
        return out

    @torch.no_grad()
    def generate(self, images: torch.Tensor, max_tokens: int | None = None) -> list[str]:
        """Greedy left-to-right decoding: what the model has learnt to say about ``images``."""
        max_tokens = min(max_tokens or self.max_length, self.max_length)
        memory = self.memory(images)
        ids = torch.full((images.shape[0], 1), BOS_ID, dtype=torch.long, device=images.device)
        done = torch.zeros(images.shape[0], dtype=torch.bool, device=images.device)
        for _ in range(max_tokens - 1):
            hidden = self.forward_decoder(
                self.embedding(ids), memory, tgt_mask=causal_mask(ids.shape[1], ids.device)
            )
            nxt = self.output(hidden[:, -1]).argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, PAD_ID), nxt)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            done |= nxt == EOS_ID
            if done.all():
                break
        return [self.tokenizer.decode(row.tolist()) for row in ids]
