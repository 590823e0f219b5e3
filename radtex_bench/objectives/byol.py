"""``byol``: Bootstrap Your Own Latent (Grill et al. 2020) on lightly.

The online network (encoder, ``BYOLProjectionHead``, ``BYOLPredictionHead``) predicts the momentum
(target) network's projection of the other view; lightly's ``NegativeCosineSimilarity``, symmetrised
over the two views. No negatives. The target network is the moving average of the online encoder and
projection head, with BYOL's cosine schedule from ``momentum`` to ``momentum_end`` (1.0): see
:mod:`.views`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..schema import PositiveInt, Probability
from .base import register_objective
from .views import MomentumObjective


@register_objective("byol")
class BYOLObjective(MomentumObjective):
    """BYOL with lightly's projection / prediction heads and negative cosine similarity."""

    def __init__(
        self,
        encoder: nn.Module,
        projection_dim: PositiveInt = 128,
        hidden_dim: PositiveInt = 512,
        momentum: Probability = 0.99,
        momentum_end: Probability = 1.0,
        **augment: Any,  # ViewObjective's view augmentation: crop_scale, rotation, brightness, ...
    ):
        super().__init__(
            encoder,
            momentum,
            momentum_end,
            **augment,
        )
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead

        self.head = BYOLProjectionHead(encoder.out_dim, hidden_dim, projection_dim)
        self.predictor = BYOLPredictionHead(projection_dim, hidden_dim, projection_dim)
        self.build_momentum()
        self.loss_fn = NegativeCosineSimilarity()

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        view0, view1 = batch["views"]  # [B, 3, H, W] each
        p0 = self.predictor(self.head(self.encoder(view0)))  # [B, projection_dim]
        p1 = self.predictor(self.head(self.encoder(view1)))
        z0, z1 = self.momentum_features(view0), self.momentum_features(view1)  # targets, no gradient
        with torch.autocast(p0.device.type, enabled=False):  # the loss in float32
            loss = 0.5 * (self.loss_fn(p0.float(), z1.float()) + self.loss_fn(p1.float(), z0.float()))
        return {"loss": loss}
