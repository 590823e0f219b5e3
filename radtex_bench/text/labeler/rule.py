"""``rule``: the default labeler: regex mentions, NegEx-style scopes, CheXpert aggregation (:mod:`.rules`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import Labeler, register_labeler


@register_labeler("rule")
class RuleLabeler(Labeler):
    """Regex mentions, NegEx-style negation / uncertainty scopes, CheXpert aggregation (no model)."""

    name = "rule"

    def label_reports(self, texts: Sequence[str]) -> np.ndarray:
        from .rules import label_matrix

        return label_matrix(list(texts))
