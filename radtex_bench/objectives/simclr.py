"""``simclr``: image-only contrastive pretraining (SimCLR, Chen et al. 2020) on lightly.

Two augmented views of each radiograph go through the encoder and lightly's ``SimCLRProjectionHead``;
lightly's ``NTXentLoss(gather_distributed=True)`` pulls the views together and pushes apart every other
image of the global batch (all ranks under DDP).

Augmentations suit radiographs (after Azizi et al. 2021 and Sowrirajan et al. 2021): a conservative
random resized crop, a small rotation, brightness/contrast jitter and blur. No horizontal flip by
default (laterality carries meaning: a left effusion is not a right one) and no colour/hue jitter
(radiographs are grey).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..data.pipeline import ViewAugment
from .base import Objective, register_objective


def xray_view_transform(
    size: int,
    crop_scale: tuple[float, float] = (0.6, 1.0),
    rotation: float = 10.0,
    brightness: float = 0.3,
    contrast: float = 0.3,
    blur_probability: float = 0.3,
    horizontal_flip: bool = False,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 ``[1, H, W]`` -> uint8 ``[1, size, size]``, torchvision transforms v2 (picklable for workers)."""
    from torchvision.transforms import v2

    kernel = max(3, (size // 16) | 1)  # odd, ~6% of the image side
    steps: list[Any] = [
        v2.RandomResizedCrop(size, scale=tuple(crop_scale), ratio=(0.85, 1.15), antialias=True),
        v2.RandomRotation(rotation),
        v2.ColorJitter(brightness=brightness, contrast=contrast),
        v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 1.5))], p=blur_probability),
    ]
    if horizontal_flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)


@register_objective("simclr")
class SimCLRObjective(Objective):
    needs = {"views"}
    n_views = 2

    def __init__(
        self,
        encoder: nn.Module,
        projection_dim: int = 128,
        hidden_dim: int = 512,
        temperature: float = 0.1,
        crop_scale: list[float] = (0.6, 1.0),
        rotation: float = 10.0,
        brightness: float = 0.3,
        contrast: float = 0.3,
        blur_probability: float = 0.3,
        horizontal_flip: bool = False,
    ):
        super().__init__(encoder)
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead

        if len(crop_scale) != 2 or not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(
                f"crop_scale must be [low, high] with 0 < low <= high <= 1, got {list(crop_scale)}"
            )
        self.augment = {
            "crop_scale": tuple(crop_scale),
            "rotation": rotation,
            "brightness": brightness,
            "contrast": contrast,
            "blur_probability": blur_probability,
            "horizontal_flip": horizontal_flip,
        }
        self.head = SimCLRProjectionHead(
            input_dim=encoder.out_dim, hidden_dim=hidden_dim, output_dim=projection_dim
        )
        self.loss_fn = NTXentLoss(temperature=temperature, gather_distributed=True)

    def view_transform(self, image_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
        return xray_view_transform(image_size, **self.augment)

    def batch_view_transform(self, image_size: int) -> ViewAugment:
        """The same augmentation, batched on the GPU when training there (the engine decides)."""
        return ViewAugment(image_size, **self.augment)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        view0, view1 = batch["views"]  # [B, 3, H, W] each
        z0 = self.head(self.encoder(view0))  # [B, projection_dim]
        z1 = self.head(self.encoder(view1))
        return {"loss": self.loss_fn(z0, z1)}
