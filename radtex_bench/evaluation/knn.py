"""The optional ``knn`` protocol: no training at all, a similarity vote of the labelled subset.

Features are L2-normalised; a test image's score for a pathology is the similarity-weighted mean label
of its ``knn_k`` most cosine-similar labelled images (weights ``exp(similarity / 0.07)``, as in the
kNN monitor of Wu et al. 2018). Labelled images missing that pathology's label do not vote.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .stats import auroc

if TYPE_CHECKING:
    from .evaluator import Cell, Evaluator

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


def knn_cell(
    evaluator: Evaluator, label: str, features: np.ndarray, budget: int, seed: int, rows: np.ndarray
) -> Cell:
    from .evaluator import Cell

    d = evaluator.data
    aucs = np.full(len(d.pathologies), np.nan)
    scores = np.full((len(d.test), len(d.pathologies)), np.nan, dtype=np.float32)
    for j in range(len(d.pathologies)):
        s = knn_scores(features[rows], d.labels[rows, j], features[d.test], evaluator.recipe.evaluation.knn_k)
        if s is not None:
            scores[:, j] = s
            aucs[j] = auroc(s, d.labels[d.test, j])
    return Cell(label, "knn", budget, seed, aucs, scores)
