"""Label efficiency as numbers with intervals: labels-to-match and the area under the budget curve.

Both are functions of the seed-averaged macro AUROC of each (objective, protocol, budget) and are
computed on the :class:`~radtex_bench.evaluation.results.Summariser`'s bootstrap replicates of it (the
same test-patient resamples and labelled subsets for every objective), so their intervals and paired
comparisons are those of the AUROC tables. Only labelled protocols' budgets (> 0) enter: a budget-0
group (zero-shot) has no place on a budget curve.

**Labels-to-match** (``efficiency.csv``). For objective A at budget b and a reference objective B, the
number of labels B needs to reach A's macro AUROC at b. B's curve is its macro AUROC against log budget
over the protocol's budgets b_1 < ... < b_K. It is first made non-decreasing by isotonic regression
(pool-adjacent-violators, equal weight per budget; more labels do not hurt in expectation, so a dip is
noise), then interpolated linearly in log budget. Labels-to-match is the smallest budget x at which that
curve reaches A's value a: with ``f_i < a <= f_{i+1}``,
``x = exp(log b_i + (a - f_i) / (f_{i+1} - f_i) * (log b_{i+1} - log b_i))``. Two cases are censored,
since the curve is not extrapolated: B reaches a already at b_1 (x is written as b_1 and read "at most
b_1"; an interpolated value is always above b_1), and B never reaches a (x is written ``inf``, read
"more than b_K"). The interval is the percentile interval of the same computation on each bootstrap
replicate (A's replicate value against B's replicate curve, each replicate isotonised); ``inf`` is an
ordinary, largest value there, so an upper bound may be ``inf``. Computed for every ordered pair of
objectives at each of A's budgets, on the first protocol of ``evaluation.protocols`` that has budgets
(``linear`` by default; list another protocol first to use it), since efficiency.csv has no protocol
column.

**Area under the budget curve** (``aubc.csv``). Per objective and protocol, the trapezoid integral of
macro AUROC over log budget from b_1 to b_K, divided by ``log b_K - log b_1``: the mean macro AUROC of
the piecewise-linear curve over the log-budget range (equivalently, macro AUROC averaged over
log-spaced budgets), hence in [0, 1]. With one budget it is that budget's macro AUROC. It is undefined
(empty) when the objective lacks a defined macro AUROC at one of the budgets: a budget is never
silently dropped. Its interval is the percentile interval over the replicates; ``aubc_comparisons.csv``
holds the paired comparisons of every pair of objectives (difference, interval, bootstrap p-value as
for budgets, and ``p_holm`` within each protocol's family of AUBC comparisons).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from sklearn.isotonic import isotonic_regression

from ..io import write_csv
from ..rundir import RunDir
from .results import PAIRED_COLUMNS, Summariser, with_holm
from .stats import paired_comparison, percentile_interval

EFFICIENCY_HEADER = ("objective", "reference", "budget", "labels_to_match", "ci_low", "ci_high")
AUBC_HEADER = ("objective", "protocol", "aubc", "ci_low", "ci_high", "budget_min", "budget_max", "n_budgets")
AUBC_COMPARISONS_HEADER = ("protocol", *PAIRED_COLUMNS)


def monotone(curves: np.ndarray) -> np.ndarray:
    """``[R, K]`` curves made non-decreasing row by row (isotonic regression); rows with NaN stay NaN."""
    out = np.full(curves.shape, np.nan)
    for r, row in enumerate(np.asarray(curves, dtype=np.float64)):
        if np.isfinite(row).all():
            out[r] = isotonic_regression(row, increasing=True)
    return out


def labels_to_match(target: np.ndarray, budgets: Sequence[int], curves: np.ndarray) -> np.ndarray:
    """Labels the reference needs to reach ``target``: ``[R]`` targets, ``[K]`` budgets, ``[R, K]``
    non-decreasing reference curves -> ``[R]`` label counts (module docstring: ``budgets[0]`` when reached
    at the first budget, ``inf`` when never reached, NaN when the target or a curve value is NaN)."""
    a = np.asarray(target, dtype=np.float64).reshape(-1)
    f = np.asarray(curves, dtype=np.float64)
    log_b = np.log(np.asarray(budgets, dtype=np.float64))
    out = np.full(a.shape, np.nan)
    valid = np.isfinite(a) & np.isfinite(f).all(axis=1)
    reached = f >= a[:, None]  # [R, K]; monotone, so once True it stays True
    first = np.where(reached.any(axis=1), reached.argmax(axis=1), len(log_b))
    out[valid & (first == len(log_b))] = np.inf
    out[valid & (first == 0)] = float(budgets[0])
    inner = np.flatnonzero(valid & (first > 0) & (first < len(log_b)))
    if inner.size:
        hi = first[inner]
        lo = hi - 1
        f_lo, f_hi = f[inner, lo], f[inner, hi]
        t = (a[inner] - f_lo) / (f_hi - f_lo)  # f_lo < a <= f_hi, so 0 < t <= 1
        out[inner] = np.exp(log_b[lo] + t * (log_b[hi] - log_b[lo]))
    return out


def area_under_budget_curve(budgets: Sequence[int], curves: np.ndarray) -> np.ndarray:
    """Normalised trapezoid area of ``[R, K]`` curves over log budget -> ``[R]`` (NaN where a value is)."""
    f = np.asarray(curves, dtype=np.float64)
    if len(budgets) == 1:
        return f[:, 0].copy()
    log_b = np.log(np.asarray(budgets, dtype=np.float64))
    area = ((f[:, 1:] + f[:, :-1]) / 2.0 * np.diff(log_b)).sum(axis=1)
    return area / (log_b[-1] - log_b[0])


def censored_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval (linear interpolation, NaN ignored) of samples that may be ``inf``: a
    percentile that falls on or next to an ``inf`` is ``inf``."""
    x = np.sort(np.asarray(samples, dtype=np.float64).reshape(-1))
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    alpha = 1.0 - confidence

    def quantile(q: float) -> float:
        h = (x.size - 1) * q
        lo, hi = math.floor(h), math.ceil(h)
        if np.isinf(x[hi]) and (hi > lo or np.isinf(x[lo])):
            return math.inf
        return float(x[lo] + (h - lo) * (x[hi] - x[lo])) if hi > lo else float(x[lo])

    return quantile(alpha / 2.0), quantile(1.0 - alpha / 2.0)


def _r(x: float, digits: int) -> float | str:
    if x is None or np.isnan(x):
        return ""
    return math.inf if np.isinf(x) else round(float(x), digits)


class Efficiency:
    """Labels-to-match and AUBC rows from a :class:`Summariser` (whose replicates they reuse)."""

    def __init__(self, summariser: Summariser):
        self.s = summariser
        self.confidence = summariser.recipe.evaluation.confidence
        self._monotone: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}

    # -- the budget grid -----------------------------------------------------------------------------

    def protocols(self) -> list[str]:
        """Protocols with budgets > 0, in the recipe's order."""
        return self.s.protocols_in_order({protocol for (_, protocol, budget) in self.s.groups if budget > 0})

    def budgets(self, protocol: str) -> list[int]:
        return sorted({b for (_, p, b) in self.s.groups if p == protocol and b > 0})

    def objectives(self, protocol: str) -> list[str]:
        present = {o for (o, p, b) in self.s.groups if p == protocol and b > 0}
        return [o for o in self.s.order if o in present] + sorted(present - set(self.s.order))

    def curve(
        self, objective: str, protocol: str, budgets: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Observed ``[K]`` and replicate ``[R, K]`` macro AUROC at ``budgets`` (NaN where missing)."""
        observed = np.array(
            [
                self.s.observed((objective, protocol, b))[0]
                if (objective, protocol, b) in self.s.groups
                else np.nan
                for b in budgets
            ]
        )
        if self.s.weights is None:
            return observed, None
        reps = np.stack(
            [
                self.s.replicates((objective, protocol, b))
                if (objective, protocol, b) in self.s.groups
                else np.full(len(self.s.weights), np.nan)
                for b in budgets
            ],
            axis=1,
        )
        return observed, reps

    # -- labels-to-match -----------------------------------------------------------------------------

    def efficiency_protocol(self) -> str | None:
        protocols = self.protocols()
        return protocols[0] if protocols else None

    def _reference(self, objective: str, protocol: str, budgets: list[int]):
        """The reference's budgets with a defined observed value, and its isotonised curves there."""
        key = (objective, protocol)
        if key not in self._monotone:
            observed, reps = self.curve(objective, protocol, budgets)
            keep = np.isfinite(observed)
            grid = np.asarray(budgets)[keep]
            obs = monotone(observed[keep][None, :])[0] if keep.any() else observed[keep]
            rep = monotone(reps[:, keep]) if reps is not None and keep.any() else None
            self._monotone[key] = (grid, obs, rep)
        return self._monotone[key]

    def efficiency_rows(self) -> list[tuple]:
        protocol = self.efficiency_protocol()
        if protocol is None:
            return []
        budgets = self.budgets(protocol)
        objectives = self.objectives(protocol)
        rows = []
        for a, ref in itertools.permutations(objectives, 2):
            grid, ref_obs, ref_reps = self._reference(ref, protocol, budgets)
            for b in budgets:
                key = (a, protocol, b)
                if key not in self.s.groups:
                    continue
                target = self.s.observed(key)[0]
                estimate = (
                    labels_to_match(np.array([target]), grid, ref_obs[None, :])[0] if grid.size else np.nan
                )
                low = high = np.nan
                if ref_reps is not None and grid.size:
                    low, high = censored_interval(
                        labels_to_match(self.s.replicates(key), grid, ref_reps), self.confidence
                    )
                rows.append((a, ref, b, _r(estimate, 1), _r(low, 1), _r(high, 1)))
        return rows

    # -- area under the budget curve -----------------------------------------------------------------

    def _aubc(self, objective: str, protocol: str) -> tuple[float, np.ndarray | None]:
        budgets = self.budgets(protocol)
        observed, reps = self.curve(objective, protocol, budgets)
        value = float(area_under_budget_curve(budgets, observed[None, :])[0])
        return value, None if reps is None else area_under_budget_curve(budgets, reps)

    def aubc_rows(self) -> list[tuple]:
        rows = []
        for protocol in self.protocols():
            budgets = self.budgets(protocol)
            for objective in self.objectives(protocol):
                value, reps = self._aubc(objective, protocol)
                low, high = (
                    percentile_interval(reps, self.confidence) if reps is not None else (np.nan, np.nan)
                )
                rows.append(
                    (
                        objective,
                        protocol,
                        _r(value, 4),
                        _r(low, 4),
                        _r(high, 4),
                        budgets[0],
                        budgets[-1],
                        len(budgets),
                    )
                )
        return rows

    def aubc_comparison_rows(self) -> list[tuple]:
        rows = []
        if self.s.weights is None:
            return rows
        for protocol in self.protocols():
            for a, b in itertools.combinations(self.objectives(protocol), 2):
                (va, ra), (vb, rb) = self._aubc(a, protocol), self._aubc(b, protocol)
                if not np.isfinite(va - vb):
                    continue
                res = paired_comparison(ra, rb, va - vb, self.confidence)
                rows.append(
                    (
                        protocol,
                        a,
                        b,
                        _r(res["diff"], 4),
                        _r(res["ci_low"], 4),
                        _r(res["ci_high"], 4),
                        _r(res["p_value"], 5),
                        res["n_boot"],
                    )
                )
        return with_holm(rows, family=lambda row: row[0], p_index=6)


def write_efficiency_tables(paths: RunDir, summariser: Summariser) -> None:
    """Write efficiency.csv, aubc.csv and aubc_comparisons.csv of a run."""
    efficiency = Efficiency(summariser)
    write_csv(paths.efficiency, EFFICIENCY_HEADER, efficiency.efficiency_rows())
    write_csv(paths.aubc, AUBC_HEADER, efficiency.aubc_rows())
    write_csv(paths.aubc_comparisons, AUBC_COMPARISONS_HEADER, efficiency.aubc_comparison_rows())
