"""The ``zeroshot`` protocol: no labels at all, positive against negative prompts.

For each scored pathology p with positive prompts P+ and negative prompts P- (``evaluation.prompts``,
defaults in :mod:`radtex_bench.evaluation.prompts`), every test image x is scored with the objective's
``text_scores``:

    s+(x) = mean_{t in P+} text_scores(x, t),    s-(x) = mean_{t in P-} text_scores(x, t)
    prob(x) = softmax([s+(x), s-(x)])[0] = sigmoid(s+(x) - s-(x))

For ``clip`` (logit-scaled cosine similarities) this is CheXzero's rule (Tiu et al. 2022); for
``captioning`` (length-normalised log-likelihoods) the probability is a monotone function of "mean
log-likelihood of the positive prompts minus that of the negative ones", so the AUROC is that
difference's. The cell stores the log-odds ``s+ - s-`` rather than the probability: the same ranking,
hence the same AUROC, without the float saturation that would tie probabilities at 0 or 1 (clip's logit
scale reaches 100). One cell per encoder, at budget 0, seed 0; it flows into results, summary and
comparisons like any labelled cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...engine.precision import autocast
from ...errors import UserError
from ...schema import option
from ..prompts import PromptSet, merged_prompts
from .base import Cell, CellTask, Protocol, register_protocol


@dataclass(frozen=True)
class ZeroshotConfig:
    """No key of its own: the prompts are the general key ``evaluation.prompts``, shared in here (with
    the defaults filled in) so that the cells are recomputed when the prompts change."""

    prompts: dict[str, PromptSet] | None = option(None, internal=True, help="evaluation.prompts")

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompts", merged_prompts(self.prompts))


def prompt_columns(
    prompts: dict[str, PromptSet], pathologies: list[str]
) -> tuple[list[str], list[tuple[np.ndarray, np.ndarray]]]:
    """Every distinct prompt text once, and per pathology the columns of its positives and negatives."""
    texts: dict[str, int] = {}
    columns = []
    for p in pathologies:
        sides = (prompts[p].positive, prompts[p].negative)
        pos, neg = (np.array([texts.setdefault(t, len(texts)) for t in side]) for side in sides)
        columns.append((pos, neg))
    return list(texts), columns


@register_protocol("zeroshot")
class ZeroshotProtocol(Protocol):
    """Mean score of positive prompts against negative prompts (CheXzero's rule), through ``text_scores``."""

    Config = ZeroshotConfig
    labelled = False
    requires = frozenset({"text_scores"})
    description = "no labels: positive vs negative report prompts through text_scores (CheXzero's rule)"

    def run(self, task: CellTask) -> Cell:
        d = self.data
        model = task.encoder.load_model()
        texts, columns = prompt_columns(self.config.prompts, d.pathologies)
        similarity = np.empty((len(d.test), len(texts)), dtype=np.float32)  # [N_test, T]
        for positions, images in self.image_batches(d.test, task.encoder.normalization):
            with autocast(self.device):
                similarity[positions] = model.text_scores(images, texts).float().cpu().numpy()
        if not np.isfinite(similarity).all():
            raise UserError(
                f"objective '{task.encoder.label}': text_scores returned NaN or infinite scores for the "
                "zero-shot prompts; check the objective's text_scores"
            )
        return self.cell(task, log_odds(similarity, columns))


def log_odds(similarity: np.ndarray, columns: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``[N, P]`` zero-shot scores: per pathology, the mean ``similarity`` ``[N, T]`` of its positive
    prompts' columns minus that of its negative ones (the log-odds of the two-way softmax)."""
    return np.stack(
        [similarity[:, pos].mean(axis=1) - similarity[:, neg].mean(axis=1) for pos, neg in columns], axis=1
    )
