"""``siglip``: sigmoid image-report pretraining (Zhai et al., "Sigmoid Loss for Language Image
Pre-Training", ICCV 2023).

The encoder's pooled feature and a small text transformer's ``[EOS]`` feature are linearly projected,
L2-normalised and scored ``logit_scale * <image, report> + logit_bias``; every image-report pair of the
batch is an independent binary classification (matching pair positive, every other pair negative).
The loss is open_clip's ``SigLipLoss``. Under DDP each rank scores its images against its own reports
and then, passing report features from rank to rank (``dist_impl`` ``bidir``, with gradients), against
every other rank's reports as negatives: the mean of the ranks' losses is the single-process loss on
the global batch, without ever materialising the global similarity matrix.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParamError
from ..schema import Fraction, PositiveFloat, PositiveInt, Range
from ..text.towers import TextEncoder
from .base import SetupContext, register_objective
from .text import CappedLogitScale, MaxLength, MinFrequency, ReportTextObjective, VocabSize, check_width_heads


@register_objective("siglip")
class SigLIPObjective(CappedLogitScale, ReportTextObjective):
    """Sigmoid image-report contrastive pretraining with open_clip's ``SigLipLoss``."""

    def __init__(
        self,
        encoder: nn.Module,
        embed_dim: PositiveInt = 128,
        width: Annotated[int, Range(ge=8)] = 256,
        layers: PositiveInt = 2,
        heads: PositiveInt = 4,
        dropout: Fraction = 0.0,
        max_length: MaxLength = 96,
        vocab_size: VocabSize = 4096,
        min_frequency: MinFrequency = 2,
        init_logit_scale: PositiveFloat = 10.0,
        init_logit_bias: Annotated[float, Range(ge=-100.0, le=100.0)] = -10.0,
        max_logit_scale: Annotated[float, Range(ge=1.0)] = 100.0,
    ):
        super().__init__(encoder, max_length, vocab_size, min_frequency)
        self.embed_dim = embed_dim
        self.width, self.layers, self.heads, self.dropout = width, layers, heads, dropout
        self.max_logit_scale = max_logit_scale
        self.image_proj = nn.Linear(encoder.out_dim, embed_dim)
        # The paper's initialisation: t' = log 10, b = -10 (most pairs are negatives at the start).
        self.logit_scale = nn.Parameter(torch.tensor(math.log(init_logit_scale)))
        self.logit_bias = nn.Parameter(torch.tensor(float(init_logit_bias)))

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        check_width_heads(params)
        if params["init_logit_scale"] > params["max_logit_scale"]:
            raise ParamError(
                "init_logit_scale",
                f"{params['init_logit_scale']} is above max_logit_scale {params['max_logit_scale']}; "
                "lower it or raise max_logit_scale",
            )

    def setup(self, context: SetupContext) -> None:
        from open_clip.loss import SigLipLoss

        self.setup_tokenizer(context)
        self.text = TextEncoder(
            self.tokenizer.vocab_size, self.width, self.layers, self.heads, self.max_length, self.dropout
        )
        self.text_proj = nn.Linear(self.width, self.embed_dim)
        self.loss_fn = SigLipLoss(rank=context.rank, world_size=context.world_size, dist_impl="bidir")

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_proj(self.encoder(images)).float(), dim=-1)  # [B, E]

    def encode_text(self, reports: list[str], device: torch.device) -> torch.Tensor:
        return F.normalize(self.text_proj(self.text(self.tokens(reports, device))).float(), dim=-1)  # [B, E]

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        images = batch["image"]  # [B, 3, H, W]
        image_features = self.encode_image(images)
        text_features = self.encode_text(batch["report"], images.device)
        with torch.autocast(images.device.type, enabled=False):  # the pair logits in float32
            loss = self.loss_fn(image_features, text_features, self.logit_scale.exp(), self.logit_bias)
        return {
            "loss": loss,
            "logit_scale": self.logit_scale.exp().detach(),
            "logit_bias": self.logit_bias.detach(),
        }

    @torch.no_grad()
    def text_scores(self, images: torch.Tensor, reports: list[str]) -> torch.Tensor:
        """``[B, R]`` match logits of every image against every report (higher = more likely a pair)."""
        image_features = self.encode_image(images)
        text_features = self.encode_text(reports, images.device)
        return self.logit_scale.exp() * image_features @ text_features.T + self.logit_bias
