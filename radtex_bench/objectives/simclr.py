"""``simclr``: image-only contrastive pretraining (SimCLR, Chen et al. 2020) on lightly.

Two augmented views of each radiograph go through the encoder and lightly's ``SimCLRProjectionHead``;
lightly's ``NTXentLoss(gather_distributed=True)`` pulls the views together and pushes apart every other
image of the global batch (all ranks under DDP).

Augmentations suit radiographs (:class:`radtex_bench.data.augment.XrayAugment`: a conservative random
resized crop, a small rotation, brightness/contrast jitter and blur; no horizontal flip by default,
since a left effusion is not a right one).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..schema import PositiveInt, Temperature
from .base import register_objective
from .views import ViewObjective


@register_objective("simclr")
class SimCLRObjective(ViewObjective):
    """SimCLR: NT-Xent between two X-ray views of each image, with lightly's projection head and loss."""

    def __init__(
        self,
        encoder: nn.Module,
        projection_dim: PositiveInt = 128,
        hidden_dim: PositiveInt = 512,
        temperature: Temperature = 0.1,
        **augment: Any,  # ViewObjective's view augmentation: crop_scale, rotation, brightness, ...
    ):
        super().__init__(encoder, **augment)
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead

        self.head = SimCLRProjectionHead(
            input_dim=encoder.out_dim, hidden_dim=hidden_dim, output_dim=projection_dim
        )
        self.loss_fn = NTXentLoss(temperature=temperature, gather_distributed=True)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        view0, view1 = batch["views"]  # [B, 3, H, W] each
        z0 = self.head(self.encoder(view0))  # [B, projection_dim]
        z1 = self.head(self.encoder(view1))
        return {"loss": self.loss_fn(z0, z1)}
