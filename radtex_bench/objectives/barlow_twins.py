"""``barlow_twins``: redundancy reduction (Zbontar et al. 2021) on lightly.

The cross-correlation matrix of the two views' embeddings (encoder + lightly's
``BarlowTwinsProjectionHead``), each dimension standardised over the batch, is driven to the identity:
diagonal to 1 (invariance), off-diagonal to 0 weighted by ``redundancy_weight`` (lightly's
``BarlowTwinsLoss``; with ``gather_distributed`` the matrix is averaged over ranks under DDP).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..schema import NonNegativeFloat, PositiveInt
from .base import register_objective
from .views import ViewObjective


@register_objective("barlow_twins")
class BarlowTwinsObjective(ViewObjective):
    """Barlow Twins with lightly's ``BarlowTwinsProjectionHead`` and ``BarlowTwinsLoss``."""

    def __init__(
        self,
        encoder: nn.Module,
        projection_dim: PositiveInt = 512,
        hidden_dim: PositiveInt = 512,
        redundancy_weight: NonNegativeFloat = 5e-3,
        **augment: Any,  # ViewObjective's view augmentation: crop_scale, rotation, brightness, ...
    ):
        super().__init__(encoder, **augment)
        from lightly.loss import BarlowTwinsLoss
        from lightly.models.modules import BarlowTwinsProjectionHead

        self.head = BarlowTwinsProjectionHead(encoder.out_dim, hidden_dim, projection_dim)
        self.loss_fn = BarlowTwinsLoss(lambda_param=redundancy_weight, gather_distributed=True)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        view0, view1 = batch["views"]  # [B, 3, H, W] each
        z0 = self.head(self.encoder(view0)).float()  # [B, projection_dim]
        z1 = self.head(self.encoder(view1)).float()
        with torch.autocast(z0.device.type, enabled=False):  # the cross-correlation in float32
            return {"loss": self.loss_fn(z0, z1)}
