"""``dino``: self-distillation with no labels (Caron et al. 2021) on lightly.

A student (encoder + lightly's ``DINOProjectionHead``) matches the softmax output of a momentum teacher
on the other view (lightly's ``DINOLoss``: teacher outputs centred by a moving average ``center`` and
sharpened by ``teacher_temp``, student softened by ``student_temp``). Two global views, no multi-crop.
The ``center`` is a buffer (in ``last.ckpt``); under DDP lightly averages its batch mean over ranks, so
every rank keeps the same centre. The teacher's cosine momentum schedule is in :mod:`.views`. The
exported encoder is the student's (``self.encoder``).
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any

import torch
from torch import nn

from ..schema import PositiveInt, Probability, Range, Temperature
from .base import register_objective
from .views import MomentumObjective


@register_objective("dino")
class DINOObjective(MomentumObjective):
    """DINO with lightly's ``DINOProjectionHead`` and ``DINOLoss`` (two views)."""

    def __init__(
        self,
        encoder: nn.Module,
        output_dim: Annotated[int, Range(ge=2, le=1_000_000)] = 2048,
        hidden_dim: PositiveInt = 512,
        bottleneck_dim: PositiveInt = 64,
        teacher_temp: Temperature = 0.04,
        student_temp: Temperature = 0.1,
        center_momentum: Probability = 0.9,
        batch_norm: bool = True,
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
        from lightly.loss import DINOLoss
        from lightly.models.modules import DINOProjectionHead

        def build_head() -> nn.Module:
            with warnings.catch_warnings():  # lightly's head uses torch's deprecated weight_norm
                warnings.filterwarnings("ignore", message=".*weight_norm.*", category=FutureWarning)
                return DINOProjectionHead(
                    encoder.out_dim, hidden_dim, bottleneck_dim, output_dim, batch_norm=batch_norm
                )

        self.head = build_head()
        self.build_momentum(build_head)  # the teacher starts as the student (weights copied)
        self.loss_fn = DINOLoss(
            output_dim=output_dim,
            warmup_teacher_temp=teacher_temp,
            teacher_temp=teacher_temp,
            student_temp=student_temp,
            center_momentum=center_momentum,
        )

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        views = batch["views"]  # 2 x [B, 3, H, W]
        teacher = [self.momentum_features(v).float() for v in views]  # [B, output_dim] each
        student = [self.head(self.encoder(v)).float() for v in views]
        # Cross-view terms only (teacher of view a vs student of view b != a); updates the centre. In
        # float32: a bf16 / fp16 product would blur the logits the teacher's 0.04 temperature sharpens.
        with torch.autocast(views[0].device.type, enabled=False):
            return {"loss": self.loss_fn(teacher, student)}
