"""``moco``: MoCo v2, momentum contrast with a queue of negatives (He et al. 2020; Chen et al. 2020).

The query is the online encoder + projection head applied to the first view; the key is the momentum
encoder + momentum head applied to the second. lightly's ``NTXentLoss`` with a memory bank scores each
query against its key and the ``queue_size`` keys of earlier batches (InfoNCE at ``temperature``), then
enqueues the new keys. Heads are lightly's ``MoCoProjectionHead`` (a 2-layer MLP, as in v2).

Correctness under DDP and across resume:

- ``gather_distributed=True``: the keys of every rank are gathered (rank order) before they enqueue,
  so every rank holds the same queue, the one a single process would hold on the whole batch.
- lightly keeps its bank out of ``state_dict()``; here the bank and its pointer are registered as
  persistent buffers, so ``last.ckpt`` holds the queue and a resume continues with it.
- the momentum update runs in :meth:`after_step` (see :mod:`.views`).

Not done: MoCo's shuffled BatchNorm (it matters with per-GPU BatchNorm statistics on large batches).
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from torch import nn

from ..schema import PositiveInt, Probability, Range, Temperature
from .base import register_objective
from .views import MomentumObjective


@register_objective("moco")
class MoCoObjective(MomentumObjective):
    """MoCo v2 with lightly's ``MoCoProjectionHead`` and ``NTXentLoss`` memory bank (the queue)."""

    def __init__(
        self,
        encoder: nn.Module,
        projection_dim: PositiveInt = 128,
        hidden_dim: PositiveInt = 512,
        temperature: Temperature = 0.2,
        queue_size: Annotated[int, Range(ge=1, le=1_000_000)] = 4096,
        momentum: Probability = 0.99,
        momentum_end: Probability = 0.99,
        **augment: Any,  # ViewObjective's view augmentation: crop_scale, rotation, brightness, ...
    ):
        super().__init__(
            encoder,
            momentum,
            momentum_end,
            **augment,
        )
        from lightly.loss import NTXentLoss
        from lightly.models.modules import MoCoProjectionHead

        self.head = MoCoProjectionHead(encoder.out_dim, hidden_dim, projection_dim)
        self.build_momentum()
        self.loss_fn = NTXentLoss(
            temperature=temperature, memory_bank_size=(queue_size, projection_dim), gather_distributed=True
        )
        bank = self.loss_fn.memory_bank
        for name in ("bank", "bank_ptr"):  # the queue is training state: last.ckpt must hold it
            bank.register_buffer(name, getattr(bank, name), persistent=True)

    @property
    def queue(self) -> torch.Tensor:
        """The keys of earlier batches ``[queue_size, projection_dim]`` (L2-normalised)."""
        return self.loss_fn.memory_bank.bank

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        view0, view1 = batch["views"]  # [B, 3, H, W] each
        query = self.head(self.encoder(view0))  # [B, projection_dim]
        key = self.momentum_features(view1)  # [B, projection_dim], no gradient
        # Scores against the queue as it was before this batch, then enqueues every rank's keys.
        with torch.autocast(query.device.type, enabled=False):  # the loss in float32
            return {"loss": self.loss_fn(query.float(), key.float())}
