"""From evaluation cells to the tables of SPEC §4: results, summary (with intervals), comparisons.

Intervals: the test split is resampled by **patient** (``evaluation.bootstrap`` replicates, the same
resamples for every objective). For a (objective, protocol, budget) the statistic is the macro AUROC
averaged over seeds; its interval is the percentile interval of that statistic over the replicates.
Comparisons are paired: both objectives are scored on the same patient resamples and the same
labelled subsets (same seeds), and the interval and p-value are those of the difference; ``p_holm`` is
the Holm-Bonferroni adjustment within each protocol's family (all of its pairs at all of its budgets).
AUPRC (average precision) is reported beside AUROC on the same pathologies, seeds and resamples.
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
from .protocols import Cell
from .stats import (
    average_precision,
    holm,
    macro_auprc_bootstrap,
    macro_auroc_bootstrap,
    mean_std,
    paired_comparison,
    patient_bootstrap_weights,
    percentile_interval,
)

RESULTS_HEADER = ("objective", "protocol", "budget", "seed", "pathology", "auc", "auprc")
SUMMARY_HEADER = (
    "objective",
    "protocol",
    "budget",
    "macro_auc",
    "macro_auc_std",
    "ci_low",
    "ci_high",
    "n_seeds",
    "macro_auprc",
    "macro_auprc_std",
    "auprc_ci_low",
    "auprc_ci_high",
)
#: The columns of every paired-comparison table (comparisons, aubc_comparisons, text_comparisons),
#: after the columns that say what is compared.
PAIRED_COLUMNS = ("objective_a", "objective_b", "diff", "ci_low", "ci_high", "p_value", "n_boot", "p_holm")
COMPARISONS_HEADER = ("protocol", "budget", *PAIRED_COLUMNS)


def _r(x: float, digits: int = 4) -> float | str:
    return "" if x is None or not np.isfinite(x) else round(float(x), digits)


def macro(aucs: np.ndarray) -> float:
    return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")


def cell_auprcs(cell: Cell, test_labels: np.ndarray) -> np.ndarray:
    """``[P]`` test AUPRC of a cell's scores, on the pathologies whose AUROC is defined (NaN elsewhere,
    so AUROC and AUPRC always cover the same pathologies)."""
    out = np.full(len(cell.aucs), np.nan)
    if cell.scores.shape[1:] != (len(cell.aucs),) or test_labels.shape[1] != len(cell.aucs):
        return out
    for j in np.flatnonzero(np.isfinite(cell.aucs)):
        out[j] = average_precision(cell.scores[:, j], test_labels[:, j])
    return out


def results_rows(cells: Sequence[Cell], pathologies: Sequence[str], test_labels: np.ndarray) -> list[tuple]:
    """One row per cell and pathology (RESULTS_HEADER); ``test_labels`` ``[N_test, P]`` give the AUPRC."""
    rows = []
    for c in sorted(cells, key=lambda c: (c.objective, c.protocol, c.budget, c.seed)):
        auprcs = cell_auprcs(c, test_labels)
        for j, name in enumerate(pathologies):
            rows.append((c.objective, c.protocol, c.budget, c.seed, name, _r(c.aucs[j]), _r(auprcs[j])))
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
        self._replicates: dict[tuple[str, str, str, int], np.ndarray] = {}
        self.test_labels = data.labels[data.test]

    def replicates(self, key: tuple[str, str, int], metric: str = "auroc") -> np.ndarray | None:
        """``[B]`` bootstrap replicates of the seed-averaged macro AUROC (or ``metric="auprc"``) of one
        group; None without bootstrap."""
        if self.weights is None:
            return None
        bootstrap = {"auroc": macro_auroc_bootstrap, "auprc": macro_auprc_bootstrap}[metric]
        if (metric, *key) not in self._replicates:
            per_seed = []
            for cell in self.groups[key]:
                defined = np.isfinite(cell.aucs)
                if not defined.any():
                    continue
                per_seed.append(
                    bootstrap(cell.scores[:, defined], self.test_labels[:, defined], self.weights)
                )
            with warnings.catch_warnings():  # a replicate undefined for every seed stays NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                self._replicates[(metric, *key)] = (
                    np.nanmean(np.stack(per_seed), axis=0) if per_seed else np.full(len(self.weights), np.nan)
                )
        return self._replicates[(metric, *key)]

    def observed(self, key: tuple[str, str, int], metric: str = "auroc") -> tuple[float, float, int]:
        """Seed mean and std of the macro AUROC (or AUPRC) of one group, and the seeds defining it."""
        if metric == "auprc":
            per_seed = [macro(cell_auprcs(c, self.test_labels)) for c in self.groups[key]]
        else:
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

    def protocols_in_order(self, protocols) -> list[str]:
        """``protocols`` in the recipe's order (others after, by name)."""
        return sorted(protocols, key=lambda p: self._protocol_budget((p, 0)))

    def summary_rows(self) -> list[tuple]:
        rows = []
        confidence = self.recipe.evaluation.confidence
        for key in self.keys():
            mean, std, n = self.observed(key)
            low, high = self.interval(key, "auroc", confidence)
            pr_mean, pr_std, _ = self.observed(key, "auprc")
            pr_low, pr_high = self.interval(key, "auprc", confidence)
            rows.append(
                (key[0], key[1], key[2], _r(mean), _r(std), _r(low), _r(high), n)
                + (_r(pr_mean), _r(pr_std), _r(pr_low), _r(pr_high))
            )
        return rows

    def interval(self, key: tuple[str, str, int], metric: str, confidence: float) -> tuple[float, float]:
        reps = self.replicates(key, metric)
        return percentile_interval(reps, confidence) if reps is not None else (np.nan, np.nan)

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
        return with_holm(rows, family=lambda row: row[0], p_index=7)


def with_holm(rows: list[tuple], family, p_index: int) -> list[tuple]:
    """``rows`` with a last column ``p_holm``: Holm-Bonferroni within each ``family(row)``.

    The adjustment is applied to the p-values as written (rounded to 5 decimals), so that it can be
    recomputed from the CSV file alone; ties in p get equal adjusted values.
    """
    p = np.array([np.nan if row[p_index] == "" else float(row[p_index]) for row in rows])
    adjusted = np.full(len(rows), np.nan)
    keys = [family(row) for row in rows]
    for key in dict.fromkeys(keys):
        members = np.array([k == key for k in keys])
        adjusted[members] = holm(p[members])
    return [(*row, _r(q, 5)) for row, q in zip(rows, adjusted, strict=True)]
