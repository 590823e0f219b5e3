"""CheXpert-style report labeler: 14 observations per report as 1 / 0 / -1 / NaN.

    from radtex_bench.text.labeler import label_report, label_reports, get_labeler

    label_report("FINDINGS: No effusion, but there is cardiomegaly. IMPRESSION: ...")
    # {"No Finding": nan, "Cardiomegaly": 1.0, "Pleural Effusion": 0.0, "Edema": nan, ...}
    label_reports(texts)          # [N, 14] float32, columns in CHEXPERT_14 order

Values follow CheXpert (Irvin et al., AAAI 2019): ``1`` positive, ``0`` negative, ``-1`` uncertain,
``NaN`` not mentioned. ``No Finding`` is 1 when no observation but Support Devices is positive or
uncertain, else NaN. The default ``rule`` labeler is regex + NegEx (Chapman et al. 2001) scopes, see
:mod:`.rules` and docs/labeler.md; ``f1chexbert`` runs CheXbert (Smit et al. 2020) from local weights.
Other labelers register with :func:`register_labeler` and are chosen by name with :func:`get_labeler`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from ...data.labels import CHEXPERT_14
from .base import LABELERS, Labeler, register_labeler

# Built-ins register themselves on import (neither imports anything heavy).
from . import chexbert, rule  # noqa: E402,F401  isort: skip
from .rule import RuleLabeler  # noqa: E402

__all__ = [
    "CHEXPERT_14",
    "LABELERS",
    "Labeler",
    "RuleLabeler",
    "get_labeler",
    "label_report",
    "label_reports",
    "register_labeler",
]


@functools.cache
def _instance(name: str) -> Labeler:
    return LABELERS.get(name, "labeler")()


def get_labeler(name: str = "rule") -> Labeler:
    """The registered labeler ``name`` (``rule`` or ``f1chexbert``), built once per process.

    Raises :class:`~radtex_bench.errors.UserError` for an unknown name or a labeler whose package or
    weights are missing.
    """
    return _instance(name)


def label_reports(texts: Sequence[str], labeler: str = "rule") -> np.ndarray:
    """``[N, 14]`` float32 CheXpert labels of ``texts`` (1 / 0 / -1 / NaN; ``CHEXPERT_14`` columns)."""
    return get_labeler(labeler).label_reports(texts)


def label_report(text: str, labeler: str = "rule") -> dict[str, float]:
    """The 14 CheXpert labels of one report as ``{observation: 1.0 | 0.0 | -1.0 | nan}``."""
    return get_labeler(labeler).label_report(text)
