"""``report_labels``: supervised pretraining on labels mined from the pretraining reports.

Each pretraining report is labelled by the toolkit's report labeler
(:func:`radtex_bench.text.labeler.label_reports`: CheXpert's 14 observations as 1 / 0 / -1 / NaN,
Irvin et al., AAAI 2019; the ``rule`` labeler by default, ``f1chexbert`` for CheXbert, Smit et al. 2020),
the columns of the recipe's ``data.pathologies`` are kept, and the recipe's ``data.uncertain`` policy
maps the uncertain ones. Then exactly as ``supervised``: a linear head on the pooled feature, binary
cross-entropy masked to the labels that exist (a finding the report does not mention is missing, not
negative). The dataset's own labels are never read: this is what CheXpert's labels are (mined from
text), and it asks whether captioning beats the cheapest use of the same reports.

The labels are computed once in :meth:`setup` (deterministic, on every rank and again on resume) and
looked up by each batch's ``index`` (its row of the pretraining table).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.labels import CHEXPERT_14, apply_uncertain_policy, canonical_name
from ..errors import UserError
from ..schema import Fraction
from .base import SetupContext, register_objective
from .supervised import SupervisedObjective

log = logging.getLogger("radtex_bench")


def mined_labels(
    reports: list[str], pathologies: list[str], policy: str, labeler: str = "rule"
) -> tuple[np.ndarray, list[str]]:
    """``[N, P]`` float32 labels of ``pathologies`` mined from ``reports`` after the uncertain ``policy``
    (NaN = not mentioned), and the pathologies the labeler does not cover (all-NaN columns)."""
    from ..text.labeler import label_reports

    raw = label_reports(list(reports), labeler)  # [N, 14], CHEXPERT_14 columns
    columns, unknown = [], []
    for name in pathologies:
        canonical = canonical_name(name)
        if canonical in CHEXPERT_14:
            columns.append(raw[:, CHEXPERT_14.index(canonical)])
        else:
            unknown.append(name)
            columns.append(np.full(len(raw), np.nan, dtype=np.float32))
    matrix = np.stack(columns, axis=1) if columns else np.zeros((len(raw), 0), np.float32)
    return apply_uncertain_policy(matrix, policy), unknown


@register_objective("report_labels")
class ReportLabelsObjective(SupervisedObjective):
    """Multi-label supervised pretraining on the report labeler's labels of the pretraining reports."""

    needs = {"image", "report"}  # reports, not labels: images without a report are left out

    def __init__(
        self, encoder: nn.Module, labeler: str = "rule", dropout: Fraction = 0.0, balance: bool = False
    ):
        super().__init__(encoder, dropout=dropout, balance=balance)
        self.labeler = labeler

    @classmethod
    def preflight(cls, encoder_name: str, params: dict[str, Any]) -> None:
        from ..text.labeler import get_labeler

        get_labeler(params.get("labeler", "rule"))  # unknown name, missing package or weights: UserError

    def setup(self, context: SetupContext) -> None:
        labels, unknown = mined_labels(
            context.reports, list(context.pathologies), context.uncertain, self.labeler
        )
        if unknown:
            log.warning(
                "report_labels: the %s labeler does not label %s (CheXpert's 14 observations only); "
                "these pathologies get no pretraining signal",
                self.labeler,
                ", ".join(unknown),
            )
        if np.isnan(labels).all():
            raise UserError(
                f"objective report_labels: the {self.labeler} labeler found none of "
                f"{', '.join(context.pathologies)} in the {len(labels)} pretraining reports; use reports "
                "that describe these findings, other data.pathologies, or drop this objective"
            )
        # Not a checkpointed buffer: setup recomputes it, identically, on every rank and on resume.
        self.register_buffer("mined", torch.from_numpy(labels), persistent=False)  # [N, P]
        super().setup(replace(context, labels=labels))

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        labels = self.mined[batch["index"].to(self.mined.device)]  # [B, P], NaN = not mentioned
        return super().forward({"image": batch["image"], "labels": labels})
