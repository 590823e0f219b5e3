"""``clip``: image-report contrastive pretraining (ConVIRT / CLIP symmetric InfoNCE).

The encoder's pooled features and a small text transformer's ``[EOS]`` features are projected into a
shared space, L2-normalised and scored with a learnable temperature. The loss is open_clip's
``ClipLoss``; under DDP it gathers the features of every rank (with gradients), so the negatives are the
whole global batch and the loss equals the single-process loss on that batch.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..text.tokenizer import ReportTokenizer, shared_tokenizer
from ..text.towers import TextEncoder
from .base import Objective, SetupContext, register_objective


def make_projection(in_dim: int, out_dim: int, kind: str) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, out_dim))


@register_objective("clip")
class ClipObjective(Objective):
    needs = {"image", "report"}

    def __init__(
        self,
        encoder: nn.Module,
        embed_dim: int = 128,
        width: int = 256,
        layers: int = 2,
        heads: int = 4,
        max_length: int = 96,
        vocab_size: int = 4096,
        min_frequency: int = 2,
        init_temperature: float = 0.07,
        max_logit_scale: float = 100.0,
        dropout: float = 0.0,
        projection: Literal["linear", "mlp"] = "mlp",
    ):
        super().__init__(encoder)
        self.embed_dim = embed_dim
        self.width, self.layers, self.heads = width, layers, heads
        self.max_length = max_length
        self.vocab_size_target = vocab_size
        self.min_frequency = min_frequency
        self.dropout = dropout
        self.projection_kind = projection
        self.max_logit_scale = max_logit_scale
        self.image_proj = make_projection(encoder.out_dim, embed_dim, projection)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.tokenizer: ReportTokenizer | None = None

    def setup(self, context: SetupContext) -> None:
        from open_clip.loss import ClipLoss

        self.tokenizer = shared_tokenizer(
            context.out_dir,
            context.reports,
            self.vocab_size_target,
            self.min_frequency,
            context.rank,
            context.barrier,
        )
        self.text = TextEncoder(
            self.tokenizer.vocab_size, self.width, self.layers, self.heads, self.max_length, self.dropout
        )
        self.text_proj = make_projection(self.width, self.embed_dim, self.projection_kind)
        # local_loss + gather_with_grad: each rank scores its own rows against all ranks' columns.
        self.loss_fn = ClipLoss(
            local_loss=True, gather_with_grad=True, rank=context.rank, world_size=context.world_size
        )

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_proj(self.encoder(images)).float(), dim=-1)  # [B, E]

    def encode_text(self, reports: list[str], device: torch.device) -> torch.Tensor:
        ids = self.tokenizer.batch(reports, self.max_length).to(device, non_blocking=True)  # [B, L]
        return F.normalize(self.text_proj(self.text(ids)).float(), dim=-1)  # [B, E]

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        images = batch["image"]  # [B, 3, H, W]
        image_features = self.encode_image(images)
        text_features = self.encode_text(batch["report"], images.device)
        scale = self.logit_scale.exp().clamp(max=self.max_logit_scale)
        loss = self.loss_fn(image_features, text_features, scale)
        return {"loss": loss, "temperature": (1.0 / scale).detach()}
