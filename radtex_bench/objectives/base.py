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

from ..data.augment import ViewAugment, XrayAugment
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
    #: The recipe's ``data.uncertain`` policy (``zeros``, ``ones``, ``ignore``), for objectives that
    #: derive labels of their own (``report_labels``); ``labels`` above already went through it.
    uncertain: str = "zeros"
    #: Waits for every rank (a no-op in one process): used to share artefacts written by rank 0.
    barrier: Callable[[], None] = lambda: None
    extra: dict[str, Any] = field(default_factory=dict)


class Objective(nn.Module):
    """Base class of pretraining objectives.

    Subclasses set ``needs`` (batch keys used: ``image``, ``report``, ``labels``, ``views``) and
    implement ``forward(batch) -> {"loss": scalar, ...}``. ``self.encoder`` is the shared encoder:
    ``encoder(images) -> [B, encoder.out_dim]``, ``encoder.forward_features(images) -> [B, C, h, w]``.

    Parameters are the keyword arguments of ``__init__``; their type hints are validated when the recipe
    is loaded, with ranges written ``Annotated[int, Range(ge=1)]`` (see :mod:`radtex_bench.schema`), and
    :meth:`check_params` checks how they fit together. Every hook the engine may call is declared here:
    :meth:`preflight`, :meth:`setup`, :meth:`augmentation` (and the two view transforms derived from it),
    :meth:`forward` and :meth:`after_step`.

    **Text API** (optional; the ``zeroshot``, ``retrieval`` and ``generation`` protocols use only these,
    so a plug-in objective that defines them is scored by those protocols for free). Both are called on
    the whole pretrained objective in eval mode, under ``torch.no_grad()`` and the evaluation's autocast,
    with ``images`` a float ``[B, 3, H, W]`` batch on the objective's device, normalised like training
    batches:

    * ``text_scores(images, reports: list[str]) -> Tensor [B, R]``: how compatible each image is with
      each report, higher = more compatible. Only the order within a row or a column matters to the
      protocols (AUROC, ranks), but zero-shot also reads ``score(pos) - score(neg)`` as log-odds, so
      scores should be on a log-probability or logit scale (``clip``: logit-scaled cosine similarity;
      ``captioning``: length-normalised log-likelihood). Keep memory bounded for large ``R`` (chunk).
    * ``generate(images, beam_size: int = 1, max_tokens: int | None = None) -> list[str]``: one report
      per image (``beam_size`` 1 = greedy decoding; ``max_tokens`` caps the length, None = the
      objective's own maximum).

    :meth:`capabilities` says which of them a class defines; protocols that need a missing one are
    skipped for that objective with a line in report.md. Every weight outside the encoder
    (:meth:`heads_state_dict`) is saved as ``pretrain/<label>/heads.safetensors`` after pretraining and
    loaded back, after :meth:`setup` has rebuilt the data-dependent parts (the tokenizer is re-read from
    the objective's folder), to rebuild the whole model for those protocols.
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
    def check_params(cls, params: dict[str, Any]) -> None:
        """Check how the (already type- and range-checked) ``params`` fit together. Optional.

        Runs when the recipe is validated, before any work. Raise
        :class:`radtex_bench.errors.ParamError` ``(key, message)`` naming the parameter to change.
        """

    @classmethod
    def preflight(cls, encoder_name: str, params: dict[str, Any]) -> None:
        """Check the environment before any work starts (e.g. weights present offline). Optional.

        Raise :class:`radtex_bench.errors.UserError` to stop the run with a clear message.
        """

    def setup(self, context: SetupContext) -> None:
        """Build data-dependent parts (vocabularies, heads sized by the label count). Optional."""

    def augmentation(self) -> XrayAugment | None:
        """The view augmentation of an objective that needs ``views`` (None: it makes no views).

        Both transforms below derive from it; override them instead for an augmentation of your own.
        """
        return None

    def view_transform(self, image_size: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Per-image augmentation for ``views``: uint8 ``[1, H, W]`` -> uint8 ``[1, S, S]``.

        Runs in the data-loading workers under a seed derived from (run seed, epoch, image), so
        views are reproducible and resume exactly.
        """
        augment = self.augmentation()
        return augment.per_image(image_size) if augment is not None else None

    def batch_view_transform(self, image_size: int) -> ViewAugment | None:
        """The same augmentation batched on the training device (used when training on a GPU), or None
        when the objective offers no batched form (its ``view_transform`` then runs in the workers)."""
        augment = self.augmentation()
        return augment.batched(image_size) if augment is not None else None

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        """Called after every optimiser step (``step`` = steps done, 1-based). Optional.

        For updates that are not gradient steps: clamping a learnable temperature to its cap (CLIP),
        moving a momentum encoder (MoCo, BYOL, DINO). Under DDP it runs on every rank on identical
        parameters, so it must be deterministic; state it changes must live in parameters or buffers so
        that ``last.ckpt`` holds it and a resume continues exactly.
        """

    def heads_state_dict(self) -> dict[str, torch.Tensor]:
        """Every weight except the encoder's (the text tower, decoder, projection heads): what
        ``heads.safetensors`` holds, so the whole pretrained model can be rebuilt after training.

        Empty for objectives without heads (``random``, ``imagenet``), which then write no
        ``heads.safetensors``. Override it only to leave out state that :meth:`setup` rebuilds."""
        encoder = {f"encoder.{k}" for k in self.encoder.state_dict()}
        return {k: v for k, v in self.state_dict().items() if k not in encoder}

    @classmethod
    def capabilities(cls) -> frozenset[str]:
        """The optional text methods (:data:`TEXT_METHODS`) this class implements."""
        return frozenset(name for name in TEXT_METHODS if callable(getattr(cls, name, None)))


#: The optional public text API of objectives (see :class:`Objective`).
TEXT_METHODS = ("text_scores", "generate")

OBJECTIVES: Registry[type[Objective]] = Registry("objective", base=Objective)


def register_objective(name: str):
    """Class decorator: make an :class:`Objective` available to recipes under ``name``."""
    return OBJECTIVES.register(name)
