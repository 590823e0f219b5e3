"""The base of report labelers and their registry (``rule``, ``f1chexbert``, plug-ins)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...data.labels import CHEXPERT_14
from ...registry import Registry


class Labeler:
    """Base class: turn report texts into CheXpert's 14 labels.

    Subclasses implement :meth:`label_reports`; ``name`` is the registry key. Constructors take no
    required arguments (:func:`get_labeler` builds them by name) and raise
    :class:`radtex_bench.errors.UserError` when something they need is missing.
    """

    name = ""

    def label_reports(self, texts: Sequence[str]) -> np.ndarray:
        """``[N, 14]`` float32: 1 / 0 / -1 / NaN per report, columns in ``CHEXPERT_14`` order."""
        raise NotImplementedError

    def label_report(self, text: str) -> dict[str, float]:
        """All 14 labels of one report: ``{observation: 1.0 | 0.0 | -1.0 | nan}``."""
        row = self.label_reports([text])[0]
        return {name: float(v) for name, v in zip(CHEXPERT_14, row)}


LABELERS: Registry[type[Labeler]] = Registry("labeler", base=Labeler)
register_labeler = LABELERS.register
