"""Pretraining objectives: the registry, the built-ins and plug-in discovery."""

from __future__ import annotations

from collections.abc import Sequence

from ..registry import import_plugin, load_entry_points
from .base import BATCH_KEYS, OBJECTIVES, Objective, SetupContext, register_objective

# Built-ins register themselves on import. Heavy libraries (open_clip, lightly, tokenizers) are
# imported inside the objectives, so listing names stays fast.
from . import captioning, checkpoint, clip, imagenet, random_init, simclr, supervised  # noqa: E402,F401  isort: skip
from . import token_classification, masked_lm, report_labels  # noqa: E402,F401  isort: skip
from . import coca, siglip, gloria  # noqa: E402,F401  isort: skip
from . import moco, byol, dino, vicreg, barlow_twins  # noqa: E402,F401  isort: skip

ENTRY_POINT_GROUP = "radtex_bench.objectives"


def load_plugins(modules: Sequence[str] = (), where: str = "plugins.{i}") -> None:
    """Declared entry points, then the recipe's ``plugins:`` modules (or the CLI's ``--plugin``); a
    module may register objectives, encoders, dataset kinds, protocols or trackers. ``where`` names the
    ``i``-th module in errors."""
    load_entry_points(ENTRY_POINT_GROUP, OBJECTIVES)
    for i, module in enumerate(modules):
        import_plugin(module, where=where.format(i=i, module=module))


__all__ = ["OBJECTIVES", "BATCH_KEYS", "Objective", "SetupContext", "register_objective", "load_plugins"]
