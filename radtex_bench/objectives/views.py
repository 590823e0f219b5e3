"""Shared bases of the image-only objectives that learn from augmented views (lightly's methods).

:class:`ViewObjective` holds the radiograph view augmentation
(:class:`radtex_bench.data.augment.XrayAugment`, with the same parameters and defaults as ``simclr``).
:class:`MomentumObjective` adds a momentum (exponential moving average) copy of the encoder and of the
projection head, the teacher / key network of MoCo, BYOL and DINO, moved by lightly's
``update_momentum`` after every optimiser step with lightly's ``cosine_schedule`` from ``momentum`` to
``momentum_end``.

Why the copy stays correct: it is a submodule, so its weights (and BatchNorm statistics) are in
``state_dict()`` and therefore in ``last.ckpt`` (a resume continues exactly) and in
``heads_state_dict()``; its parameters do not require gradients, so neither the optimiser nor DDP sees
them; and under DDP every rank applies the same update to the same (all-reduced) weights in
:meth:`Objective.after_step`, so the copies never drift apart. Only ``self.encoder`` is exported.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..data.augment import CropScale, Degrees, Jitter, XrayAugment, check_crop_scale
from ..errors import ParamError
from ..schema import Probability
from .base import Objective


class ViewObjective(Objective):
    """Base of objectives that need two augmented ``views`` of each radiograph."""

    needs = {"views"}
    n_views = 2

    def __init__(
        self,
        encoder: nn.Module,
        crop_scale: CropScale = (0.6, 1.0),
        rotation: Degrees = 10.0,
        brightness: Jitter = 0.3,
        contrast: Jitter = 0.3,
        blur_probability: Probability = 0.3,
        horizontal_flip: bool = False,
    ):
        super().__init__(encoder)
        self.augment = XrayAugment(
            crop_scale=tuple(crop_scale),
            rotation=rotation,
            brightness=brightness,
            contrast=contrast,
            blur_probability=blur_probability,
            horizontal_flip=horizontal_flip,
        )

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        check_crop_scale(params)

    def augmentation(self) -> XrayAugment:
        return self.augment


def momentum_copy(module: nn.Module, build: Callable[[], nn.Module] | None = None) -> nn.Module:
    """A frozen copy of ``module`` with its weights: the starting point of its moving average.

    ``build`` makes a fresh module of the same shape, for modules ``copy.deepcopy`` cannot copy (torch's
    old ``weight_norm``, used by lightly's DINO head, keeps a non-leaf tensor attribute).
    """
    from lightly.models.utils import deactivate_requires_grad

    if build is None:
        twin = copy.deepcopy(module)
    else:
        twin = build()
        twin.load_state_dict(module.state_dict())
    deactivate_requires_grad(twin)
    return twin


class MomentumObjective(ViewObjective):
    """Base of objectives with a momentum encoder (``momentum_encoder``) and head (``momentum_head``).

    Subclasses build ``self.head`` and then call :meth:`build_momentum` once. The moving average
    ``ema = m * ema + (1 - m) * online`` uses ``m = cosine_schedule(step - 1, total_steps, momentum,
    momentum_end)``: ``momentum`` at the first step, rising to ``momentum_end`` at the last.
    """

    def __init__(self, encoder: nn.Module, momentum: float, momentum_end: float, **augment: Any):
        super().__init__(encoder, **augment)
        self.momentum = momentum
        self.momentum_end = momentum_end

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        super().check_params(params)
        if params["momentum_end"] < params["momentum"]:
            raise ParamError(
                "momentum_end",
                f"{params['momentum_end']} is below momentum {params['momentum']}; the schedule rises "
                "from momentum to momentum_end (set them equal for a constant momentum)",
            )

    def build_momentum(self, build_head: Callable[[], nn.Module] | None = None) -> None:
        """Create the momentum copies of ``encoder`` and ``head`` (equal to them at the start);
        ``build_head`` as in :func:`momentum_copy`."""
        self.momentum_encoder = momentum_copy(self.encoder)
        self.momentum_head = momentum_copy(self.head, build_head)

    def momentum_at(self, step: int, total_steps: int) -> float:
        """The momentum of the update after optimiser step ``step`` (1-based) of ``total_steps``."""
        from lightly.utils.scheduler import cosine_schedule

        return cosine_schedule(step - 1, total_steps, self.momentum, self.momentum_end)

    @torch.no_grad()
    def momentum_features(self, images: torch.Tensor) -> torch.Tensor:
        """The momentum network's output for ``images`` ``[B, 3, H, W]`` (no gradient)."""
        return self.momentum_head(self.momentum_encoder(images))

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        from lightly.models.utils import update_momentum

        m = self.momentum_at(step, total_steps)
        update_momentum(self.encoder, self.momentum_encoder, m)
        update_momentum(self.head, self.momentum_head, m)
