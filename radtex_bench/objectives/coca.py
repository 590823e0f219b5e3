"""``coca``: Contrastive Captioners (Yu et al., "CoCa: Contrastive Captioners are Image-Text Foundation
Models", TMLR 2022): image-report contrastive learning and captioning in one model, on one encoder grid.

- Image side: the encoder's grid ``[B, C, h, w]`` as ``h*w`` tokens. An attentional pooler (open_clip's
  ``AttentionalPooler``, one learned query) gives the contrastive image embedding; the grid tokens,
  projected to ``width``, are the captioning decoder's memory.
- Text side: a causal "unimodal" transformer over the report; its ``[EOS]`` output (which has seen the
  whole report) is the contrastive text embedding. A "multimodal" causal decoder on top of the unimodal
  outputs, with cross-attention to the image tokens, predicts each next token (output layer tied to the
  token embedding).
- Loss: open_clip's ``CoCaLoss`` = ``contrastive_weight`` x symmetric InfoNCE (features gathered from
  every rank with gradients under DDP, as in ``clip``) + ``caption_weight`` x token cross-entropy
  (padding ignored). CoCa's weights are 1 and 2.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParamError
from ..schema import Fraction, NonNegativeFloat, PositiveFloat, PositiveInt, Range
from ..text.tokenizer import PAD_ID
from ..text.towers import TokenEmbedding, causal_mask, grid_tokens, transformer_decoder
from .base import SetupContext, register_objective
from .captioning import beam_search
from .text import CappedLogitScale, MaxLength, MinFrequency, ReportTextObjective, VocabSize, check_width_heads


@register_objective("coca")
class CoCaObjective(CappedLogitScale, ReportTextObjective):
    """CoCa: contrastive (attentional pooling) + captioning (decoder on the grid), open_clip's CoCaLoss."""

    def __init__(
        self,
        encoder: nn.Module,
        embed_dim: PositiveInt = 128,
        width: Annotated[int, Range(ge=8)] = 256,
        heads: PositiveInt = 4,
        unimodal_layers: PositiveInt = 1,
        multimodal_layers: PositiveInt = 1,
        dropout: Fraction = 0.0,
        max_length: MaxLength = 96,
        vocab_size: VocabSize = 4096,
        min_frequency: MinFrequency = 2,
        contrastive_weight: NonNegativeFloat = 1.0,
        caption_weight: NonNegativeFloat = 2.0,
        init_temperature: PositiveFloat = 0.07,
        max_logit_scale: Annotated[float, Range(ge=1.0)] = 100.0,
    ):
        super().__init__(encoder, max_length, vocab_size, min_frequency)
        from open_clip.transformer import AttentionalPooler

        self.embed_dim, self.width, self.heads = embed_dim, width, heads
        self.unimodal_layers, self.multimodal_layers = unimodal_layers, multimodal_layers
        self.dropout = dropout
        self.contrastive_weight, self.caption_weight = contrastive_weight, caption_weight
        self.max_logit_scale = max_logit_scale
        self.image_pool = AttentionalPooler(width, encoder.out_dim, n_head=heads, n_queries=1)
        self.image_proj = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, embed_dim))
        self.visual_proj = nn.Sequential(nn.Linear(encoder.out_dim, width), nn.LayerNorm(width))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        check_width_heads(params)
        if params["contrastive_weight"] == 0 and params["caption_weight"] == 0:
            raise ParamError(
                "caption_weight", "contrastive_weight and caption_weight are both 0: nothing to learn"
            )
        if params["init_temperature"] < 1.0 / params["max_logit_scale"]:
            raise ParamError(
                "init_temperature",
                f"{params['init_temperature']} is below 1/max_logit_scale = "
                f"{1.0 / params['max_logit_scale']:.4g}; raise it or raise max_logit_scale",
            )

    def setup(self, context: SetupContext) -> None:
        from open_clip.loss import CoCaLoss

        vocab = self.setup_tokenizer(context).vocab_size
        self.embedding = TokenEmbedding(vocab, self.width, self.max_length, self.dropout)
        layer = nn.TransformerEncoderLayer(
            self.width,
            self.heads,
            4 * self.width,
            self.dropout,
            batch_first=True,
            norm_first=True,
            activation="gelu",
        )
        self.unimodal = nn.TransformerEncoder(layer, self.unimodal_layers, enable_nested_tensor=False)
        self.text_norm = nn.LayerNorm(self.width)
        self.text_proj = nn.Linear(self.width, self.embed_dim)
        self.multimodal = transformer_decoder(self.width, self.heads, self.multimodal_layers, self.dropout)
        self.output = nn.Linear(self.width, vocab)
        self.output.weight = self.embedding.tokens.weight  # tied
        # local_loss + gather_with_grad: each rank scores its own rows against all ranks' columns. Unit
        # weights here, ours in forward: CoCaLoss skips a 0-weighted contrastive term, which leaves the
        # contrastive heads without gradients, and DDP stops on parameters that got none.
        self.loss_fn = CoCaLoss(
            caption_loss_weight=1.0,
            clip_loss_weight=1.0,
            pad_id=PAD_ID,
            local_loss=True,
            gather_with_grad=True,
            rank=context.rank,
            world_size=context.world_size,
        )

    # -- the two towers ----------------------------------------------------------------------------

    def encode_grid(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised contrastive image embedding ``[B, E]`` and the decoder memory ``[B, h*w, D]``."""
        tokens = grid_tokens(self.encoder.forward_features(images))  # [B, h*w, C]
        pooled = self.image_pool(tokens)[:, 0]  # [B, D]
        embedding = F.normalize(self.image_proj(pooled).float(), dim=-1)
        return embedding, self.visual_proj(tokens)

    def unimodal_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Causal unimodal text features ``[B, L, D]``: position i has seen tokens 0..i only."""
        length = ids.shape[1]
        return self.unimodal(
            self.embedding(ids),
            mask=causal_mask(length, ids.device),
            src_key_padding_mask=ids == PAD_ID,
            is_causal=True,
        )

    def text_embedding(self, ids: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Normalised contrastive text embedding ``[B, E]`` from the ``[EOS]`` position of ``hidden``."""
        eos = (ids != PAD_ID).sum(dim=1) - 1  # [B]
        pooled = self.text_norm(hidden[torch.arange(ids.shape[0], device=ids.device), eos])  # [B, D]
        return F.normalize(self.text_proj(pooled).float(), dim=-1)

    def caption_logits(self, ids: torch.Tensor, hidden: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``[B, L, V]`` for every position of ``ids`` (causal, reads the image)."""
        length = ids.shape[1]
        out = self.multimodal(
            hidden,
            memory,
            tgt_mask=causal_mask(length, ids.device),
            tgt_key_padding_mask=ids == PAD_ID,
            tgt_is_causal=True,
        )  # [B, L, D]
        return self.output(out)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        images = batch["image"]  # [B, 3, H, W]
        ids = self.tokens(batch["report"], images.device)  # [B, L]
        image_features, memory = self.encode_grid(images)
        hidden = self.unimodal_text(ids)  # [B, L, D]
        text_features = self.text_embedding(ids, hidden)
        # Causal attention: the outputs before the last position never saw it, so the prefix ids[:, :-1]
        # can be read off the same pass that produced the [EOS] embedding.
        logits = self.caption_logits(ids[:, :-1], hidden[:, :-1], memory).float()  # [B, L-1, V]
        scale = self.logit_scale.exp()
        with torch.autocast(images.device.type, enabled=False):  # both losses in float32
            contrastive, caption = self.loss_fn(image_features, text_features, logits, ids[:, 1:], scale)
        contrastive, caption = self.contrastive_weight * contrastive, self.caption_weight * caption
        return {
            "loss": contrastive + caption,
            "contrastive_loss": contrastive,
            "caption_loss": caption,
            "temperature": (1.0 / scale).detach(),
        }

    @torch.no_grad()
    def text_scores(self, images: torch.Tensor, reports: list[str]) -> torch.Tensor:
        """``[B, R]`` contrastive logits (learnt scale x cosine) of every image with every report."""
        image_features, _ = self.encode_grid(images)
        ids = self.tokens(reports, images.device)
        return self.logit_scale.exp() * image_features @ self.text_embedding(ids, self.unimodal_text(ids)).T

    @torch.no_grad()
    def generate(self, images: torch.Tensor, beam_size: int = 1, max_tokens: int | None = None) -> list[str]:
        """One report per image of ``images`` ``[B, 3, H, W]`` from the captioning head: greedy for
        ``beam_size`` 1, else captioning's beam search (best mean log-probability per written token).
        ``max_tokens`` caps the length including ``[BOS]``/``[EOS]`` (None or larger = ``max_length``)."""
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        length = min(max_tokens or self.max_length, self.max_length)
        _, memory = self.encode_grid(images)  # [B, h*w, D]

        def step(prefix: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return self.caption_logits(prefix, self.unimodal_text(prefix), memory[rows])[:, -1]  # [N, V]

        ids = beam_search(step, memory.shape[0], beam_size, length, images.device)  # [B, T]
        return [self.tokenizer.decode(row.tolist()) for row in ids]
