"""The shared base of objectives that read reports: one tokenizer setup for every text objective.

The vocabulary is a byte-level BPE trained on the pretraining reports (rank 0 trains it once and saves
``tokenizer.json`` in the objective's folder; every rank and every resume reads it back), so nothing is
downloaded. Subclasses list ``max_length``, ``vocab_size`` and ``min_frequency`` among their own
parameters (the recipe validates each objective's ``__init__`` signature) and pass them on.

With ``text_model`` (a local Hugging Face model folder, :mod:`radtex_bench.text.pretrained`) the model's
own tokenizer replaces the BPE (``vocab_size`` and ``min_frequency`` are then unused); the folder is
checked in :meth:`ReportTextObjective.preflight`, before any work.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch
from torch import nn

from ..errors import ParamError
from ..schema import NonNegativeInt, Range
from ..text.pretrained import PretrainedTokenizer, check_text_model
from ..text.tokenizer import ReportTokenizer, shared_tokenizer
from .base import Objective, SetupContext

#: ``[BOS] t1 .. tn [EOS]`` needs room for at least one token.
MaxLength = Annotated[int, Range(ge=3, le=4096)]
#: Target vocabulary size. Byte-level BPE always keeps its 256 byte tokens and 4 special tokens, so a
#: target below 260 simply learns no merges.
VocabSize = Annotated[int, Range(ge=1, le=1_000_000)]
MinFrequency = Annotated[int, Range(ge=1)]
#: With ``text_model``: the embeddings and the first N transformer layers keep their pretrained weights.
FreezeLayers = NonNegativeInt


def check_width_heads(params: dict, width: str = "width", heads: str = "heads") -> None:
    """Attention splits the width evenly over the heads."""
    if params[width] % params[heads]:
        raise ParamError(
            heads, f"{params[heads]} heads do not divide {width} {params[width]}; choose a divisor"
        )


class ReportTextObjective(Objective):
    """Base class of objectives that need ``report``: the tokenizer and report -> token ids."""

    needs = {"image", "report"}

    def __init__(
        self,
        encoder: nn.Module,
        max_length: int = 96,
        vocab_size: int = 4096,
        min_frequency: int = 2,
        text_model: str | None = None,
    ):
        super().__init__(encoder)
        self.max_length = max_length
        self.vocab_size_target = vocab_size
        self.min_frequency = min_frequency
        self.text_model = text_model
        self.tokenizer: ReportTokenizer | PretrainedTokenizer | None = None

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        if params.get("freeze_layers") and not params.get("text_model"):
            raise ParamError("freeze_layers", "only applies to a pretrained text_model; set text_model or 0")

    @classmethod
    def preflight(cls, encoder_name: str, params: dict[str, Any]) -> None:
        """A ``text_model`` folder must hold a usable config and tokenizer (checked before any work)."""
        if params.get("text_model"):
            check_text_model(
                params["text_model"],
                params.get("max_length", 96),
                params.get("freeze_layers", 0),
                "params.text_model",
            )

    def setup_tokenizer(self, context: SetupContext) -> ReportTokenizer | PretrainedTokenizer:
        """The tokenizer, chosen here for every text objective: the ``text_model``'s own, else the run's
        BPE, trained (rank 0, once) or read back. Call it first in ``setup``."""
        if self.text_model:
            self.tokenizer = PretrainedTokenizer.load(self.text_model)
            return self.tokenizer
        self.tokenizer = shared_tokenizer(
            context.out_dir,
            context.reports,
            self.vocab_size_target,
            self.min_frequency,
            context.rank,
            context.barrier,
        )
        return self.tokenizer

    def tokens(self, reports: list[str], device: torch.device) -> torch.Tensor:
        """``[B, L]`` long ids ``[BOS] t1..tn [EOS] PAD..`` on ``device`` (truncated to ``max_length``)."""
        return self.tokenizer.batch(reports, self.max_length).to(device, non_blocking=True)


class CappedLogitScale:
    """Mix-in for objectives with a learnable ``logit_scale`` (log of 1/temperature) and a cap
    ``max_logit_scale`` (clip, siglip, coca): after every optimiser step the parameter is clamped to
    ``[0, log(max_logit_scale)]``. The parameter itself is clamped, not its use in ``forward()``: a clamp
    there has zero gradient above the cap and would freeze the temperature for good (open_clip's training
    loop does the same). List it before the objective base: ``class X(CappedLogitScale, ...)``."""

    logit_scale: nn.Parameter
    max_logit_scale: float

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        self.logit_scale.clamp_(0.0, math.log(self.max_logit_scale))
