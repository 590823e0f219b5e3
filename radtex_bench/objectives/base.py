"""The plug-in API: :class:`Objective` and :func:`register_objective`.

An objective owns the shared encoder plus whatever heads it needs, and maps a batch to a dict whose
``loss`` is a scalar tensor. The training engine, checkpointing, DDP and evaluation are the same for
every objective, so a new one is only this class (see docs/objectives.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..registry import Registry

#: Keys an objective may request from the data pipeline.
BATCH_KEYS = frozenset({"image", "report", "labels", "views"})


@dataclass
class SetupContext:
    """What an objective may learn about its pretraining data before training starts.

    ``setup`` runs on every rank and again on resume, so it must be deterministic (the captioning
    tokenizer is trained from ``reports`` the first time and re-read from ``out_dir`` afterwards).
    """

    reports: Sequence[str]
    labels: np.ndarray  # [N, P] float32 after the uncertain policy, NaN = missing
    pathologies: Sequence[str]
    out_dir: Path  # DIR/pretrain/<label>/: where objective artefacts (tokenizer.json) belong
    image_size: int
    seed: int
    rank: int = 0
    world_size: int = 1
    #: Waits for every rank (a no-op in one process): used to share artefacts written by rank 0.
    barrier: Callable[[], None] = lambda: None
    extra: dict[str, Any] = field(default_factory=dict)


class Objective(nn.Module):
    """Base class of pretraining objectives.

    Subclasses set ``needs`` (batch keys used: ``image``, ``report``, ``labels``, ``views``) and
    implement ``forward(batch) -> {"loss": scalar, ...}``. ``self.encoder`` is the shared encoder:
    ``encoder(images) -> [B, encoder.out_dim]``, ``encoder.forward_features(images) -> [B, C, h, w]``.
    """

    needs: ClassVar[set[str]] = {"image"}
    #: False for objectives that only set weights (``imagenet``, ``random``): no training run.
    pretrains: ClassVar[bool] = True
    #: Number of augmented views per image when ``"views"`` is needed.
    n_views: ClassVar[int] = 2

    def __init__(self, encoder: nn.Module, **params: Any):
        super().__init__()
        self.encoder = encoder

    @classmethod
    def preflight(cls, encoder_name: str, params: dict[str, Any]) -> None:
        """Check the environment before any work starts (e.g. weights present offline). Optional.

        Raise :class:`radtex_bench.errors.UserError` to stop the run with a clear message.
        """

    def setup(self, context: SetupContext) -> None:
        """Build data-dependent parts (vocabularies, heads sized by the label count). Optional."""

    def view_transform(self, image_size: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Per-image augmentation for ``views``: uint8 ``[1, H, W]`` -> uint8 ``[1, S, S]``.

        Runs in the data-loading workers under a seed derived from (run seed, epoch, image), so
        views are reproducible and resume exactly. Objectives that need views override it.
        """
        return None

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError


OBJECTIVES: Registry[type[Objective]] = Registry("objective", base=Objective)


def register_objective(name: str):
    """Class decorator: make an :class:`Objective` available to recipes under ``name``."""
    return OBJECTIVES.register(name)
