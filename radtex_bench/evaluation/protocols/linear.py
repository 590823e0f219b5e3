"""The ``linear`` protocol: a logistic-regression probe per pathology on frozen features.

Features are standardised with statistics of the whole training pool (images only, no labels). For
each pathology the inverse regularisation strength ``C`` is chosen from :data:`C_GRID` by AUROC on the
validation split (never on test); the chosen probe then scores the test split.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from ..stats import auroc
from .base import Cell, CellTask, Protocol, register_protocol

C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
FALLBACK_C = 1e-2  # used when the validation split lacks a class for a pathology


class Standardiser:
    def __init__(self, pool: np.ndarray):
        self.mean = pool.mean(axis=0, dtype=np.float64).astype(np.float32)
        std = pool.std(axis=0, dtype=np.float64).astype(np.float32)
        self.std = np.where(std > 1e-6, std, 1.0).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std


def _fit(x: np.ndarray, y: np.ndarray, c: float, model=None):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if model is None:
        model = LogisticRegression(C=c, max_iter=2000, tol=1e-4, warm_start=True)
    model.set_params(C=c)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    return model


def probe_pathology(
    train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, test_x: np.ndarray
) -> tuple[np.ndarray | None, float | None]:
    """Test-set scores of the probe for one pathology, and the chosen C.

    Rows whose label is NaN are left out. Returns ``(None, None)`` when the labelled subset lacks a
    positive or a negative: the cell is then reported as missing, not as 0.5.
    """
    keep = ~np.isnan(train_y)
    x, y = train_x[keep], train_y[keep].astype(int)
    if len(np.unique(y)) < 2:
        return None, None
    val_keep = ~np.isnan(val_y)
    vx, vy = val_x[val_keep], val_y[val_keep]
    best_c, best_auc, model = FALLBACK_C, -np.inf, None
    models: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    if len(np.unique(vy)) == 2:
        for c in C_GRID:  # increasing C: each fit warm-starts from the previous, stronger-regularised one
            model = _fit(x, y, c, model)
            auc = auroc(model.decision_function(vx), vy)
            models[c] = (model.coef_.copy(), model.intercept_.copy())
            if auc > best_auc + 1e-12:  # ties keep the stronger regularisation
                best_auc, best_c = auc, c
        coef, intercept = models[best_c]
    else:
        model = _fit(x, y, best_c, None)
        coef, intercept = model.coef_, model.intercept_
    return test_x @ coef[0] + intercept[0], best_c


@dataclass(frozen=True)
class LinearConfig:
    """The linear probe has no settings: C is chosen on validation from :data:`C_GRID`."""


@register_protocol("linear")
class LinearProtocol(Protocol):
    """Logistic-regression probe per pathology on frozen, standardised features (C chosen on validation)."""

    Config = LinearConfig
    description = "logistic-regression probe per pathology on frozen features (C chosen on validation)"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._scalers: dict[str, Standardiser] = {}

    def run(self, task: CellTask) -> Cell:
        d = self.data
        features = task.encoder.features()  # [N, D]
        if task.encoder.label not in self._scalers:
            self._scalers[task.encoder.label] = Standardiser(features[d.pool])
        scale = self._scalers[task.encoder.label]
        val_x, test_x = scale(features[d.val]), scale(features[d.test])

        def fit(j: int, known: np.ndarray) -> np.ndarray | None:
            scores, _ = probe_pathology(
                scale(features[known]), d.labels[known, j], val_x, d.labels[d.val, j], test_x
            )
            return scores

        # Probes are many small BLAS calls: one thread each is ~10x faster than a thread pool that
        # thrashes (and frees the other cores for anything else running).
        with threadpool_limits(1):
            return self.cell(task, self.per_pathology(task.rows, fit))
