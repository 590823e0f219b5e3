"""``vicreg``: Variance-Invariance-Covariance Regularisation (Bardes et al. 2022) on lightly.

The two views' embeddings (encoder + lightly's ``VICRegProjectionHead``, the "expander") are pulled
together (invariance, weight ``invariance_weight``), each embedding dimension is kept above unit standard
deviation over the batch (variance, ``variance_weight``) and decorrelated from the others (covariance,
``covariance_weight``): lightly's ``VICRegLoss``. With ``gather_distributed`` the variance and covariance
terms use the global batch under DDP.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..schema import NonNegativeFloat, PositiveInt
from .base import register_objective
from .views import ViewObjective


@register_objective("vicreg")
class VICRegObjective(ViewObjective):
    """VICReg with lightly's ``VICRegProjectionHead`` and ``VICRegLoss``."""

    def __init__(
        self,
        encoder: nn.Module,
        projection_dim: PositiveInt = 512,
        hidden_dim: PositiveInt = 512,
        invariance_weight: NonNegativeFloat = 25.0,
        variance_weight: NonNegativeFloat = 25.0,
        covariance_weight: NonNegativeFloat = 1.0,
        **augment: Any,  # ViewObjective's view augmentation: crop_scale, rotation, brightness, ...
    ):
        super().__init__(encoder, **augment)
        from lightly.loss import VICRegLoss
        from lightly.models.modules.heads import VICRegProjectionHead

        self.head = VICRegProjectionHead(encoder.out_dim, hidden_dim, projection_dim, num_layers=3)
        self.loss_fn = VICRegLoss(
            lambda_param=invariance_weight,
            mu_param=variance_weight,
            nu_param=covariance_weight,
            gather_distributed=True,
        )

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        view0, view1 = batch["views"]  # [B, 3, H, W] each
        z0 = self.head(self.encoder(view0)).float()  # [B, projection_dim]
        z1 = self.head(self.encoder(view1)).float()
        with torch.autocast(z0.device.type, enabled=False):  # variances and covariances in float32
            return {"loss": self.loss_fn(z0, z1)}
