"""Statistics for the benchmark: AUROC, patient-level bootstrap, intervals and paired comparisons.

**AUROC.** The area under the ROC curve is computed as the Mann-Whitney statistic with midranks:
``AUC = P(s+ > s-) + 0.5 P(s+ = s-)`` over all (positive, negative) image pairs of one pathology.
Images whose label is missing (NaN) are excluded. When only one class is present the AUROC is
undefined and reported as NaN (never 0.5). Scores must be finite for every labelled image.

**Macro AUROC.** The mean of the per-pathology AUROCs over the pathologies for which it is defined
(NaN when none is).

**Patient bootstrap.** Test images of one patient are correlated, so confidence intervals resample
*patients*, not images: each replicate draws as many patients as the test set has, uniformly with
replacement, and every image carries its patient's draw count as an integer weight. A replicate's
AUROC is the weighted Mann-Whitney statistic, i.e. exactly the AUROC of the resampled test set in
which each image appears as many times as its weight. The draws come from
``numpy.random.default_rng(numpy.random.SeedSequence([seed, 0xB007]))`` over the sorted unique
patient ids, so one seed gives the same resamples for every objective (and for any row order of the
same test set); comparisons between objectives are therefore *paired*. In a replicate where a
pathology has no positive or no negative image its AUROC is undefined and that replicate's macro
AUROC averages the remaining pathologies.

**Intervals.** Percentile intervals of the bootstrap replicates (linear interpolation, NaN replicates
ignored); 95% by default.

**Paired comparison.** For objectives A and B evaluated on the same test set and the same patient
resamples, the reported difference is the observed macro AUROC of A minus that of B on the full test
set; its interval is the percentile interval of the replicate differences ``d = a - b``. The null
hypothesis is that A and B have equal macro AUROC on the population of test patients (for the given
trained encoders and probes). The two-sided p-value is
``p = min(1, 2 min((#{d <= 0} + 1) / (B + 1), (#{d >= 0} + 1) / (B + 1)))`` over the B replicates with
a defined difference, i.e. (up to the +1 correction) the smallest level at which the percentile
interval of the difference excludes 0. This accounts for test-set sampling variability only, not
for variability between training seeds; to compare seed-averaged results, average each objective's
replicates over seeds (on the same resamples) before comparing.

**AUPRC.** Average precision, the step-wise area under the precision-recall curve used by scikit-learn's
``average_precision_score``: ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct scores in descending
order, a threshold taking all images tied at it. It is defined whenever a positive image is present
(NaN otherwise, never 0), and a weighted replicate counts each image as many times as its weight, as
for AUROC. Its chance level is the prevalence, so unlike AUROC it is not comparable across pathologies.

**Holm-Bonferroni.** :func:`holm` adjusts a family of m p-values step-down: with the p-values sorted
ascending, ``p_holm_(i) = min(1, max_{j <= i} (m - j + 1) p_(j))``. It controls the family-wise error
rate under any dependence between the tests; rejecting where ``p_holm < alpha`` is Holm's procedure.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = [
    "auroc",
    "macro_auroc",
    "patient_bootstrap_weights",
    "weighted_auroc",
    "macro_auroc_bootstrap",
    "percentile_interval",
    "paired_comparison",
    "mean_std",
    "average_precision",
    "weighted_average_precision",
    "macro_auprc_bootstrap",
    "holm",
]

#: Second entropy word of the bootstrap's seed sequence (budgets use another), so the resamples of
#: seed s are independent of anything else drawn with seed s.
_STREAM = 0xB007

#: At most this many (replicate x image) cells are processed at once, to bound memory.
_CHUNK_CELLS = 1 << 21


def _scores_labels(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate one pathology's ``[N]`` scores and labels (1, 0 or NaN)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"scores and labels must be 1-D of equal length, got {s.shape} and {y.shape}")
    known = ~np.isnan(y)
    if not np.all((y[known] == 0) | (y[known] == 1)):
        raise ValueError("labels must be 1, 0 or NaN")
    if not np.all(np.isfinite(s[known])):
        raise ValueError("scores must be finite for every labelled image (got NaN or inf)")
    return s, y


def _weights(weights: np.ndarray, n: int) -> np.ndarray:
    w = np.asarray(weights)
    if w.ndim != 2 or w.shape[1] != n:
        raise ValueError(f"weights must have shape [B, N={n}], got {w.shape}")
    if w.size and w.min() < 0:
        raise ValueError("weights must be non-negative")
    return w


def _weighted_auroc(s: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Core of :func:`weighted_auroc` on validated inputs: ``[N]``, ``[N]``, ``[B, N]`` -> ``[B]``.

    With ``C`` the cumulative negative weight in ascending score order, a positive image with score
    ``s`` beats ``C(< s)`` negatives and ties ``C(<= s) - C(< s)``, so it contributes
    ``w * (C(< s) + C(<= s)) / 2`` to the Mann-Whitney numerator (midranks).
    """
    out = np.full(w.shape[0], np.nan)
    pos_cols = np.flatnonzero(y == 1)
    neg_cols = np.flatnonzero(y == 0)
    if pos_cols.size == 0 or neg_cols.size == 0 or w.shape[0] == 0:
        return out
    neg_cols = neg_cols[np.argsort(s[neg_cols], kind="stable")]
    neg_scores = s[neg_cols]
    lo = np.searchsorted(neg_scores, s[pos_cols], side="left")  # negatives strictly below
    hi = np.searchsorted(neg_scores, s[pos_cols], side="right")  # negatives below or tied
    step = max(1, _CHUNK_CELLS // (pos_cols.size + neg_cols.size))
    for start in range(0, w.shape[0], step):
        wc = w[start : start + step]
        wpos = wc[:, pos_cols].astype(np.float64)
        cum = np.zeros((wc.shape[0], neg_cols.size + 1))
        np.cumsum(wc[:, neg_cols], axis=1, dtype=np.float64, out=cum[:, 1:])
        num = 0.5 * np.einsum("ij,ij->i", wpos, cum[:, lo] + cum[:, hi])
        n_pos, n_neg = wpos.sum(axis=1), cum[:, -1]
        defined = (n_pos > 0) & (n_neg > 0)
        auc = np.full(wc.shape[0], np.nan)
        auc[defined] = num[defined] / (n_pos[defined] * n_neg[defined])
        out[start : start + wc.shape[0]] = auc
    return out


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUROC of one pathology: ``[N]`` scores, ``[N]`` labels (1/0/NaN). NaN if one class only."""
    s, y = _scores_labels(scores, labels)
    return float(_weighted_auroc(s, y, np.ones((1, s.shape[0])))[0])


def macro_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean AUROC over the pathologies (columns of ``[N, P]`` inputs) where it is defined; else NaN."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if s.ndim != 2 or y.shape != s.shape:
        raise ValueError(f"scores and labels must both be [N, P], got {s.shape} and {y.shape}")
    values = np.array([auroc(s[:, p], y[:, p]) for p in range(s.shape[1])])
    return float(_nanmean(values[None, :])[0]) if values.size else float("nan")


def patient_bootstrap_weights(patient_ids: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """``[n_boot, N]`` int32 weights: per replicate, each image's patient's draw count.

    Each replicate draws ``U`` patients (``U`` = number of unique patients) uniformly with
    replacement, i.e. a multinomial over patients; all images of a patient share its count. The same
    ``(set of patient ids, n_boot, seed)`` always gives the same per-patient counts. Memory:
    ``4 * n_boot * N`` bytes.
    """
    pids = np.asarray(patient_ids)
    if pids.ndim != 1:
        raise ValueError(f"patient_ids must be 1-D, got shape {pids.shape}")
    if int(n_boot) < 0 or int(seed) < 0:
        raise ValueError(f"n_boot and seed must be non-negative, got {n_boot} and {seed}")
    n_boot = int(n_boot)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _STREAM]))
    if pids.size == 0:
        return np.zeros((n_boot, 0), dtype=np.int32)
    _, inv = np.unique(pids, return_inverse=True)
    inv = inv.reshape(-1)
    n_pat = int(inv.max()) + 1
    counts = np.empty((n_boot, n_pat), dtype=np.int32)
    rows_per_chunk = max(1, _CHUNK_CELLS // n_pat)
    for lo in range(0, n_boot, rows_per_chunk):
        b = min(rows_per_chunk, n_boot - lo)
        draws = rng.integers(0, n_pat, size=(b, n_pat))
        flat = (draws + (np.arange(b) * n_pat)[:, None]).ravel()  # row-offset bincount
        counts[lo : lo + b] = np.bincount(flat, minlength=b * n_pat).reshape(b, n_pat)
    return counts[:, inv]


def weighted_auroc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of each bootstrap replicate: ``[N]`` scores and labels, ``[B, N]`` weights -> ``[B]``.

    Weight ``k`` counts an image ``k`` times (midranks for ties). NaN labels are excluded; a replicate
    with no positive or no negative weight gives NaN.
    """
    s, y = _scores_labels(scores, labels)
    return _weighted_auroc(s, y, _weights(weights, s.shape[0]))


def _nanmean(values: np.ndarray) -> np.ndarray:
    """Row means over finite entries of a 2-D array; NaN for rows with none (no warning)."""
    finite = np.isfinite(values)
    n = finite.sum(axis=1)
    total = np.where(finite, values, 0.0).sum(axis=1)
    return np.divide(total, n, out=np.full(values.shape[0], np.nan), where=n > 0)


def macro_auroc_bootstrap(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Macro AUROC of each replicate: ``[N, P]`` scores and labels, ``[B, N]`` weights -> ``[B]``.

    Per replicate, the mean of the weighted AUROC over the pathologies defined in that replicate;
    NaN if none is.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if s.ndim != 2 or y.shape != s.shape:
        raise ValueError(f"scores and labels must both be [N, P], got {s.shape} and {y.shape}")
    w = _weights(weights, s.shape[0])
    if s.shape[1] == 0:
        return np.full(w.shape[0], np.nan)
    per = np.stack([_weighted_auroc(*_scores_labels(s[:, p], y[:, p]), w) for p in range(s.shape[1])], 1)
    return _nanmean(per)


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided percentile interval of bootstrap ``samples``, ignoring NaN; (nan, nan) if none."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    alpha = 1.0 - confidence
    low, high = np.percentile(x, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return float(low), float(high)


def paired_comparison(
    a: np.ndarray, b: np.ndarray, observed_diff: float, confidence: float = 0.95
) -> dict[str, float]:
    """Paired bootstrap comparison of two objectives' macro AUROC over the same patient resamples.

    Args:
        a, b: ``[B]`` bootstrap replicates of the macro AUROC of objectives A and B, computed with the
            same :func:`patient_bootstrap_weights`.
        observed_diff: macro AUROC of A minus that of B on the full test set.
        confidence: level of the percentile interval of the difference.

    Returns:
        ``{"diff", "ci_low", "ci_high", "p_value", "n_boot"}``: the observed difference, the
        percentile interval of ``a - b``, the two-sided bootstrap p-value for the null of equal macro
        AUROC (see the module docstring) and the number of replicates where both are defined. NaN
        interval and p-value if there are none.
    """
    xa = np.asarray(a, dtype=np.float64).reshape(-1)
    xb = np.asarray(b, dtype=np.float64).reshape(-1)
    if xa.shape != xb.shape:
        raise ValueError(f"a and b must have the same number of replicates, got {xa.size} and {xb.size}")
    d = xa - xb
    d = d[~np.isnan(d)]
    low, high = percentile_interval(d, confidence)
    n = d.size
    if n == 0:
        p = float("nan")
    else:
        le = (np.count_nonzero(d <= 0) + 1) / (n + 1)
        ge = (np.count_nonzero(d >= 0) + 1) / (n + 1)
        p = float(min(1.0, 2.0 * min(le, ge)))
    return {"diff": float(observed_diff), "ci_low": low, "ci_high": high, "p_value": p, "n_boot": n}


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) ignoring NaN; std NaN for one value (a spread over one
    seed is undefined, not 0), (nan, nan) for none."""
    x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
    x = x.reshape(-1)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float("nan")
    return float(x.mean()), float(x.std(ddof=1))


def _weighted_average_precision(s: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Core of :func:`weighted_average_precision` on validated inputs: ``[N]``, ``[N]``, ``[B, N]`` -> ``[B]``.

    Images are sorted by descending score once. Only thresholds (runs of tied scores) holding a
    positive move recall, so precision is needed there alone: per replicate, the cumulative positive
    and negative weight down to the end of each such run.
    """
    out = np.full(w.shape[0], np.nan)
    known = np.flatnonzero(~np.isnan(y))
    if known.size == 0 or w.shape[0] == 0 or not (y[known] == 1).any():
        return out
    order = known[np.argsort(-s[known], kind="stable")]
    positive = y[order] == 1  # [n] in descending score order
    sorted_scores = s[order]
    ends = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])  # last image of each run
    pos_upto = np.cumsum(positive)[ends]  # positives down to each run's end
    neg_upto = np.cumsum(~positive)[ends]
    moves = np.diff(pos_upto, prepend=0) > 0  # runs holding a positive
    pos_upto, neg_upto = pos_upto[moves], neg_upto[moves]  # [G]
    pos_cols, neg_cols = order[positive], order[~positive]
    step = max(1, _CHUNK_CELLS // order.size)
    for start in range(0, w.shape[0], step):
        wc = w[start : start + step]
        cum_pos = np.zeros((wc.shape[0], pos_cols.size + 1))
        np.cumsum(wc[:, pos_cols], axis=1, dtype=np.float64, out=cum_pos[:, 1:])
        cum_neg = np.zeros((wc.shape[0], neg_cols.size + 1))
        np.cumsum(wc[:, neg_cols], axis=1, dtype=np.float64, out=cum_neg[:, 1:])
        tp, fp = cum_pos[:, pos_upto], cum_neg[:, neg_upto]  # [b, G]
        called = tp + fp
        precision = np.divide(tp, called, out=np.zeros_like(tp), where=called > 0)
        gain = np.diff(tp, axis=1, prepend=0.0)  # recall step times the total positive weight
        total = cum_pos[:, -1]
        ap = np.full(wc.shape[0], np.nan)
        defined = total > 0
        ap[defined] = np.einsum("ij,ij->i", gain[defined], precision[defined]) / total[defined]
        out[start : start + wc.shape[0]] = ap
    return out


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUPRC (average precision) of one pathology: ``[N]`` scores and labels (1/0/NaN); NaN without a positive."""
    s, y = _scores_labels(scores, labels)
    return float(_weighted_average_precision(s, y, np.ones((1, s.shape[0])))[0])


def weighted_average_precision(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average precision of each bootstrap replicate: ``[N]`` scores and labels, ``[B, N]`` weights -> ``[B]``.

    Equal to scikit-learn's ``average_precision_score(labels, scores, sample_weight=weights[b])`` on the
    labelled images of each replicate; NaN for a replicate without positive weight.
    """
    s, y = _scores_labels(scores, labels)
    return _weighted_average_precision(s, y, _weights(weights, s.shape[0]))


def macro_auprc_bootstrap(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Macro AUPRC of each replicate: ``[N, P]`` scores and labels, ``[B, N]`` weights -> ``[B]``."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if s.ndim != 2 or y.shape != s.shape:
        raise ValueError(f"scores and labels must both be [N, P], got {s.shape} and {y.shape}")
    w = _weights(weights, s.shape[0])
    if s.shape[1] == 0:
        return np.full(w.shape[0], np.nan)
    per = np.stack(
        [_weighted_average_precision(*_scores_labels(s[:, p], y[:, p]), w) for p in range(s.shape[1])], 1
    )
    return _nanmean(per)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values of one family (see the module docstring); NaN entries are not
    tests: they stay NaN and do not count in m."""
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    out = np.full(p.shape, np.nan)
    tests = np.flatnonzero(np.isfinite(p))
    m = tests.size
    if m == 0:
        return out
    order = tests[np.argsort(p[tests], kind="stable")]
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out
