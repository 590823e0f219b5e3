"""``random``: the encoder as initialised, with no pretraining. The floor every objective must beat."""

from __future__ import annotations

from torch import nn

from .base import Objective, register_objective


@register_objective("random")
class RandomInit(Objective):
    needs: set[str] = set()
    pretrains = False

    def __init__(self, encoder: nn.Module):  # no parameters: any `params` key is an unknown-key error
        super().__init__(encoder)

    def forward(self, batch):  # pragma: no cover - never trained
        raise RuntimeError("the random objective is not trained")
