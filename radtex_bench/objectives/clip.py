"""``clip``: image-report contrastive pretraining (ConVIRT / CLIP InfoNCE).

The encoder's pooled features and a small text transformer's ``[EOS]`` features are projected into a
shared space, L2-normalised and scored with a temperature (learnable by default). The loss is
``w * CE(image -> text) + (1 - w) * CE(text -> image)`` with ``w = image_to_text_weight``: 0.5 is CLIP's
symmetric loss (open_clip's ``ClipLoss`` itself), 0.75 ConVIRT's (Zhang et al., *Contrastive Learning
of Medical Visual Representations from Paired Images and Text*, MLHC 2022, lambda = 0.75). Under DDP
the logits come from ``ClipLoss.get_logits``, which gathers the features of every rank with gradients,
so the negatives are the whole global batch and the loss equals the single-process loss on that batch.

``text_scores(images, reports)`` is the logit-scaled cosine similarity the loss is trained on.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParamError
from ..schema import Fraction, PositiveFloat, PositiveInt, Probability, Range
from ..text.pretrained import PretrainedTextEncoder
from ..text.towers import TextEncoder
from .base import SetupContext, register_objective
from .text import (
    CappedLogitScale,
    FreezeLayers,
    MaxLength,
    MinFrequency,
    ReportTextObjective,
    VocabSize,
    check_width_heads,
)

#: Reports encoded per forward pass of the text tower in ``text_scores``.
TEXT_CHUNK = 256


def make_projection(in_dim: int, out_dim: int, kind: str) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, out_dim))


@register_objective("clip")
class ClipObjective(CappedLogitScale, ReportTextObjective):
    """Image-report contrastive pretraining (CLIP / ConVIRT InfoNCE) on open_clip's ClipLoss."""

    def __init__(
        self,
        encoder: nn.Module,
        embed_dim: PositiveInt = 128,
        width: Annotated[int, Range(ge=8)] = 256,
        layers: PositiveInt = 2,
        heads: PositiveInt = 4,
        max_length: MaxLength = 96,
        vocab_size: VocabSize = 4096,
        min_frequency: MinFrequency = 2,
        init_temperature: PositiveFloat = 0.07,
        max_logit_scale: Annotated[float, Range(ge=1.0)] = 100.0,
        dropout: Fraction = 0.0,
        projection: Literal["linear", "mlp"] = "mlp",
        image_to_text_weight: Probability = 0.5,
        learn_temperature: bool = True,
        text_model: str | None = None,
        freeze_layers: FreezeLayers = 0,
    ):
        super().__init__(encoder, max_length, vocab_size, min_frequency, text_model)
        self.freeze_layers = freeze_layers
        self.embed_dim = embed_dim
        self.width, self.layers, self.heads = width, layers, heads
        self.dropout = dropout
        self.projection_kind = projection
        self.max_logit_scale = max_logit_scale
        self.image_to_text_weight = image_to_text_weight
        self.image_proj = make_projection(encoder.out_dim, embed_dim, projection)
        # A fixed temperature (ConVIRT's 0.1) is a parameter without gradient: the optimiser skips it
        # and the checkpoint and heads.safetensors still hold it.
        self.logit_scale = nn.Parameter(
            torch.tensor(math.log(1.0 / init_temperature)), requires_grad=learn_temperature
        )

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        super().check_params(params)
        check_width_heads(params)
        if params["init_temperature"] < 1.0 / params["max_logit_scale"]:
            raise ParamError(
                "init_temperature",
                f"{params['init_temperature']} is below 1/max_logit_scale = {1.0 / params['max_logit_scale']:.4g}, "
                "so the logit scale would start above its cap; raise it or raise max_logit_scale",
            )

    def setup(self, context: SetupContext) -> None:
        from open_clip.loss import ClipLoss

        self.setup_tokenizer(context)
        if self.text_model:  # a pretrained language model from a local folder, pooled at [CLS]
            self.text = PretrainedTextEncoder(self.tokenizer, self.freeze_layers)
        else:
            self.text = TextEncoder(
                self.tokenizer.vocab_size, self.width, self.layers, self.heads, self.max_length, self.dropout
            )
        self.text_proj = make_projection(self.text.out_dim, self.embed_dim, self.projection_kind)
        # local_loss + gather_with_grad: each rank scores its own rows against all ranks' columns.
        self.loss_fn = ClipLoss(
            local_loss=True, gather_with_grad=True, rank=context.rank, world_size=context.world_size
        )

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_proj(self.encoder(images)).float(), dim=-1)  # [B, E]

    def encode_text(self, reports: list[str], device: torch.device) -> torch.Tensor:
        ids = self.tokens(reports, device)  # [B, L]
        return F.normalize(self.text_proj(self.text(ids)).float(), dim=-1)  # [B, E]

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        images = batch["image"]  # [B, 3, H, W]
        image_features = self.encode_image(images)
        text_features = self.encode_text(batch["report"], images.device)
        scale = self.logit_scale.exp()
        if self.image_to_text_weight == 0.5:
            loss = self.loss_fn(image_features, text_features, scale)  # CLIP: exactly open_clip's loss
        else:
            loss = self.weighted_loss(image_features, text_features, scale)
        return {"loss": loss, "temperature": (1.0 / scale).detach()}

    def weighted_loss(
        self, image_features: torch.Tensor, text_features: torch.Tensor, scale: torch.Tensor
    ) -> torch.Tensor:
        """ConVIRT's ``w * CE(image -> text) + (1 - w) * CE(text -> image)`` on ClipLoss's logits.

        ``get_logits`` gathers every rank's features with gradients (``local_loss``: this rank's rows
        against all ranks' columns), and ``get_ground_truth`` offsets the targets by the rank, so the
        loss is the single-process loss on the global batch, as for ``ClipLoss`` itself.
        """
        per_image, per_text = self.loss_fn.get_logits(image_features, text_features, scale)  # [b, B] each
        targets = self.loss_fn.get_ground_truth(image_features.device, per_image.shape[0])  # [b]
        w = self.image_to_text_weight
        return w * F.cross_entropy(per_image, targets) + (1.0 - w) * F.cross_entropy(per_text, targets)

    @torch.no_grad()
    def text_scores(self, images: torch.Tensor, reports: list[str]) -> torch.Tensor:
        """``[B, R]`` float32 logit-scaled cosine similarities of ``images`` ``[B, 3, H, W]`` and ``reports``.

        The logits the contrastive loss is trained on (``exp(logit_scale) * cos``); reports are encoded
        in chunks of :data:`TEXT_CHUNK`, so memory is ``[B, R]`` plus one chunk.
        """
        image_features = self.encode_image(images)  # [B, E]
        text_features = torch.cat(
            [
                self.encode_text(reports[i : i + TEXT_CHUNK], images.device)
                for i in range(0, len(reports), TEXT_CHUNK)
            ]
        )  # [R, E]
        # In fp32 even under autocast: bf16 keeps ~3 digits of a cosine, which would tie candidates in
        # retrieval (ties count against the model there).
        with torch.autocast(images.device.type, enabled=False):
            return self.logit_scale.exp().float() * image_features.float() @ text_features.float().T
