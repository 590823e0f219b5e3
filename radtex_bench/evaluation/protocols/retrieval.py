"""The ``retrieval`` protocol: find an image's report among candidates, and a report's image.

Queries are the test images whose report is not empty. They are partitioned into candidate pools of at
most ``evaluation.retrieval.max_candidates`` (a random partition into near-equal pools, drawn from the
recipe seed and the test set alone, so every objective ranks the same pools and comparisons stay
paired). Within a pool of m images and their m reports the objective's ``text_scores`` gives the
``[m, m]`` score matrix, computed in batches of test images, so memory is bounded by
``max_candidates^2`` whatever the size of the test set.

* **image -> report**: for image i, the rank of its report among the pool's m reports;
* **report -> image**: for the report of image j, the rank of image j among the pool's m images.

A candidate counts as correct when its report text equals the query's (after collapsing whitespace):
identical normal reports ("No acute cardiopulmonary process.") are common, and retrieving another
image's identical report is not a mistake. The rank of a query is 1 + the number of incorrect
candidates that score **at least** as high as its best correct candidate, so ties count against the
model (a constant scorer gets the worst rank, not the average one). Recall@K is the share of queries
with rank <= K; the median rank is the median over queries. Per-query ranks are kept in the cell
(``Cell.extra``), one entry per test image (0 for an image without a report), so intervals come from the
same patient bootstrap as every other result (:mod:`radtex_bench.evaluation.text_tables`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...engine.precision import autocast
from ...errors import UserError
from ...schema import option
from ...seeds import derive_seed
from .base import Cell, CellTask, Protocol, register_protocol

#: ``Cell.extra`` keys: per test image, its rank as a query in each direction (0 = not a query).
DIRECTIONS = ("image_to_report", "report_to_image")


@dataclass(frozen=True)
class RetrievalConfig:
    max_candidates: int = option(
        1000,
        ge=10,
        le=10_000,
        help="largest candidate pool; the test queries are split into pools of at most this many "
        "(cost grows with its square: one text_scores pair per image and candidate report)",
    )


def normalise_report(text: str) -> str:
    """The text compared for correctness: surrounding and repeated whitespace collapsed."""
    return " ".join(str(text).split())


def retrieval_pools(n: int, max_candidates: int, seed: int) -> list[np.ndarray]:
    """A partition of ``range(n)`` into ``ceil(n / max_candidates)`` near-equal pools (sorted).

    Drawn from ``seed`` only, so every objective of a recipe gets the same pools.
    """
    if n == 0:
        return []
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(pool) for pool in np.array_split(order, math.ceil(n / max_candidates))]


def pessimistic_ranks(scores: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """``[m]`` 1-based ranks of each query's best correct candidate (queries on rows).

    ``scores`` ``[m, c]`` and ``correct`` ``[m, c]`` bool (every row holds a correct candidate). Ties
    with an incorrect candidate count against the query.
    """
    best = np.where(correct, scores, -np.inf).max(axis=1, keepdims=True)  # [m, 1]
    return 1 + ((scores >= best) & ~correct).sum(axis=1)


@register_protocol("retrieval")
class RetrievalProtocol(Protocol):
    """Image -> report and report -> image Recall@1/5/10 and median rank, through ``text_scores``."""

    Config = RetrievalConfig
    labelled = False
    auroc = False
    reads_test_reports = True
    requires = frozenset({"text_scores"})
    description = "image->report and report->image Recall@1/5/10 and median rank through text_scores"

    def queries(self) -> tuple[np.ndarray, list[str]]:
        """Positions in the test split of the images with a report, and every test image's report text."""
        reports = self.data.table.frame["report"].to_numpy()[self.data.test]
        texts = [normalise_report(r) for r in reports]
        return np.array([i for i, t in enumerate(texts) if t], dtype=np.int64), texts

    def run(self, task: CellTask) -> Cell:
        d = self.data
        model = task.encoder.load_model()
        queries, texts = self.queries()
        ranks = {name: np.zeros(len(d.test), dtype=np.int64) for name in DIRECTIONS}
        pool_of = np.full(len(d.test), -1, dtype=np.int64)
        n_correct = np.zeros(len(d.test), dtype=np.int64)  # correct candidates in the pool, itself included
        seed = derive_seed(self.seed, "retrieval")
        for p, pool in enumerate(retrieval_pools(len(queries), self.config.max_candidates, seed)):
            members = queries[pool]  # positions in the test split
            reports = [texts[i] for i in members]
            scores = np.empty((len(members), len(members)), dtype=np.float32)  # [images, reports]
            for positions, images in self.image_batches(d.test[members], task.encoder.normalization):
                with autocast(self.device):
                    scores[positions] = model.text_scores(images, reports).float().cpu().numpy()
            if not np.isfinite(scores).all():
                raise UserError(
                    f"objective '{task.encoder.label}': text_scores returned NaN or infinite scores in "
                    "retrieval; check the objective's text_scores"
                )
            codes = np.unique(np.array(reports), return_inverse=True)[1].reshape(-1)  # one id per text
            correct = codes[:, None] == codes[None, :]  # [m, m], symmetric
            ranks["image_to_report"][members] = pessimistic_ranks(scores, correct)
            ranks["report_to_image"][members] = pessimistic_ranks(scores.T, correct)
            pool_of[members] = p
            n_correct[members] = correct.sum(axis=1)
        n_test = len(d.test)
        return Cell(
            task.encoder.label,
            self.name,
            task.budget,
            task.seed,
            np.zeros(0),
            np.zeros((n_test, 0), dtype=np.float32),
            {
                **{f"{name}_rank": r for name, r in ranks.items()},
                "pool": pool_of,
                "n_correct": n_correct,
            },
        )
