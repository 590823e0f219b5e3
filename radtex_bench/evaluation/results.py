"""From evaluation cells to the tables of SPEC §4: results, summary (with intervals), comparisons.

Intervals: the test split is resampled by **patient** (``evaluation.bootstrap`` replicates, the same
resamples for every objective). For a (objective, protocol, budget) the statistic is the macro AUROC
averaged over seeds; its interval is the percentile interval of that statistic over the replicates.
Comparisons are paired: both objectives are scored on the same patient resamples and the same
labelled subsets (same seeds), and the interval and p-value are those of the difference.
"""

from __future__ import annotations

import itertools
import warnings
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from ..config import Recipe
from ..seeds import derive_seed
from .data import EvalData
from .evaluator import Cell
from .stats import (
    macro_auroc_bootstrap,
    mean_std,
    paired_comparison,
    patient_bootstrap_weights,
    percentile_interval,
)

RESULTS_HEADER = ("objective", "protocol", "budget", "seed", "pathology", "auc")
SUMMARY_HEADER = (
    "objective",
    "protocol",
    "budget",
    "macro_auc",
    "macro_auc_std",
    "ci_low",
    "ci_high",
    "n_seeds",
)
COMPARISONS_HEADER = (
    "protocol",
    "budget",
    "objective_a",
    "objective_b",
    "diff",
    "ci_low",
    "ci_high",
    "p_value",
    "n_boot",
)


def _r(x: float, digits: int = 4) -> float | str:
    return "" if x is None or not np.isfinite(x) else round(float(x), digits)


def macro(aucs: np.ndarray) -> float:
    return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")


def results_rows(cells: Sequence[Cell], pathologies: Sequence[str]) -> list[tuple]:
    rows = []
    for c in sorted(cells, key=lambda c: (c.objective, c.protocol, c.budget, c.seed)):
        for j, name in enumerate(pathologies):
            rows.append((c.objective, c.protocol, c.budget, c.seed, name, _r(c.aucs[j])))
    return rows


class Summariser:
    def __init__(self, recipe: Recipe, data: EvalData, cells: Sequence[Cell], order: Sequence[str]):
        self.recipe = recipe
        self.data = data
        self.order = list(order)
        self.groups: dict[tuple[str, str, int], list[Cell]] = defaultdict(list)
        for c in cells:
            self.groups[(c.objective, c.protocol, c.budget)].append(c)
        n_boot = recipe.evaluation.bootstrap
        self.weights = (
            patient_bootstrap_weights(data.test_patients, n_boot, derive_seed(recipe.seed, "bootstrap"))
            if n_boot
            else None
        )
        self._replicates: dict[tuple[str, str, int], np.ndarray] = {}
        self.test_labels = data.labels[data.test]

    def replicates(self, key: tuple[str, str, int]) -> np.ndarray | None:
        """Bootstrap replicates of the seed-averaged macro AUROC of one group."""
        if self.weights is None:
            return None
        if key not in self._replicates:
            per_seed = []
            for cell in self.groups[key]:
                defined = np.isfinite(cell.aucs)
                if not defined.any():
                    continue
                per_seed.append(
                    macro_auroc_bootstrap(cell.scores[:, defined], self.test_labels[:, defined], self.weights)
                )
            with warnings.catch_warnings():  # a replicate undefined for every seed stays NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                self._replicates[key] = (
                    np.nanmean(np.stack(per_seed), axis=0) if per_seed else np.full(len(self.weights), np.nan)
                )
        return self._replicates[key]

    def observed(self, key: tuple[str, str, int]) -> tuple[float, float, int]:
        per_seed = [macro(c.aucs) for c in self.groups[key]]
        mean, std = mean_std(np.array(per_seed, dtype=float))
        return mean, std, int(np.isfinite(per_seed).sum())

    def keys(self) -> list[tuple[str, str, int]]:
        rank = {label: i for i, label in enumerate(self.order)}
        return sorted(
            self.groups, key=lambda k: (*self._protocol_budget(k[1:]), rank.get(k[0], len(rank)), k[0])
        )

    def _protocol_budget(self, key: tuple[str, int]) -> tuple[int, str, int]:
        """Protocols in the recipe's order, then budgets ascending."""
        protocols = list(self.recipe.evaluation.protocols)
        protocol, budget = key
        return (protocols.index(protocol) if protocol in protocols else len(protocols), protocol, budget)

    def summary_rows(self) -> list[tuple]:
        rows = []
        confidence = self.recipe.evaluation.confidence
        for key in self.keys():
            mean, std, n = self.observed(key)
            reps = self.replicates(key)
            low, high = percentile_interval(reps, confidence) if reps is not None else (np.nan, np.nan)
            rows.append((key[0], key[1], key[2], _r(mean), _r(std), _r(low), _r(high), n))
        return rows

    def comparison_rows(self) -> list[tuple]:
        rows = []
        if self.weights is None:
            return rows
        confidence = self.recipe.evaluation.confidence
        protocols_budgets = sorted({(k[1], k[2]) for k in self.groups}, key=self._protocol_budget)
        for protocol, budget in protocols_budgets:
            labels = [o for o in self.order if (o, protocol, budget) in self.groups]
            for a, b in itertools.combinations(labels, 2):
                ka, kb = (a, protocol, budget), (b, protocol, budget)
                diff = self.observed(ka)[0] - self.observed(kb)[0]
                if not np.isfinite(diff):
                    continue
                res = paired_comparison(self.replicates(ka), self.replicates(kb), diff, confidence)
                rows.append(
                    (
                        protocol,
                        budget,
                        a,
                        b,
                        _r(res["diff"]),
                        _r(res["ci_low"]),
                        _r(res["ci_high"]),
                        _r(res["p_value"], 5),
                        res["n_boot"],
                    )
                )
        return rows
