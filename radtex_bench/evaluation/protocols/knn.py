"""The optional ``knn`` protocol: no training at all, a similarity vote of the labelled subset.

Features are L2-normalised; a test image's score for a pathology is the similarity-weighted mean label
of its ``evaluation.knn.k`` most cosine-similar labelled images (weights ``exp(similarity / 0.07)``, as in
the kNN monitor of Wu et al. 2018). Labelled images missing that pathology's label do not vote.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from ...schema import option
from .base import Cell, CellTask, Protocol, register_protocol

TEMPERATURE = 0.07


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_scores(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, k: int) -> np.ndarray | None:
    keep = ~np.isnan(train_y)
    if len(np.unique(train_y[keep])) < 2:
        return None
    x, y = _normalise(train_x[keep]), train_y[keep]
    sims = _normalise(test_x) @ x.T  # [N_test, N_train]
    k = min(k, len(y))
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # [N_test, k]
    weights = np.exp(np.take_along_axis(sims, top, axis=1) / TEMPERATURE)
    return (weights * y[top]).sum(axis=1) / weights.sum(axis=1)


@dataclass(frozen=True)
class KnnConfig:
    k: int = option(20, ge=1, help="neighbours that vote (fewer when the labelled subset is smaller)")


@register_protocol("knn")
class KnnProtocol(Protocol):
    """Similarity-weighted vote of the k nearest labelled images (cosine, temperature 0.07)."""

    Config = KnnConfig
    description = "similarity-weighted vote of the k nearest labelled images; no training"

    def run(self, task: CellTask) -> Cell:
        d = self.data
        features = task.encoder.features()  # [N, D]
        test_x = features[d.test]

        def fit(j: int, known: np.ndarray) -> np.ndarray | None:
            return knn_scores(features[known], d.labels[known, j], test_x, self.config.k)

        with threadpool_limits(1):
            return self.cell(task, self.per_pathology(task.rows, fit))
