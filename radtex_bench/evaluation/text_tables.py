"""The tables of the text-side protocols, from their cells alone: retrieval.csv and generation.csv.

:func:`write_text_tables` takes the cells, the test split's patient ids and the bootstrap settings, so
the CSVs can be rebuilt from cached cells (``DIR/eval/<label>/<protocol>/b0_s0.npz``) without the
models. Every interval resamples **test patients** with :func:`~radtex_bench.evaluation.stats.
patient_bootstrap_weights` and the seed the summary uses, so a replicate is the same resample of the
same patients in summary.csv, retrieval.csv and generation.csv; a statistic of a replicate is the
statistic of the resampled test set (an image drawn k times counts k times).

**Retrieval** (``retrieval.csv``: ``objective,direction,metric,value,ci_low,ci_high``). Per direction,
``R@K`` is the share of queries whose rank is at most K (a fraction in [0, 1]) and ``median_rank`` the
median of the 1-based ranks (the mean of the two middle ranks when their number is even); replicates
weight each query by its patient's draw count. ``retrieval_chance.csv`` gives the Recall@K a random
ranking would get on the same pools, ``mean over queries of 1 - C(m - c, K) / C(m, K)`` for a pool of m
candidates of which c are correct.

**Generation** (``generation.csv``: ``objective,metric,value,ci_low,ci_high``). ``bleu_1..4``,
``rouge_l`` and ``cider`` as :mod:`radtex_bench.text.metrics` computes them (pycocoevalcap's
conventions; CIDEr's document frequencies fixed at the full test set in every replicate). Clinical
efficacy compares the labeler's CheXpert labels of the generated and the reference report, for the
scored pathologies that are CheXpert labels: a pathology is *positive* in a report when its label is 1;
uncertain (-1), negative (0) and not mentioned all count as not positive. Per pathology, over the
scored images, TP / FP / FN give precision ``TP / (TP + FP)`` (0 when nothing was generated positive),
recall ``TP / (TP + FN)`` and F1 ``2 TP / (2 TP + FP + FN)``, all **undefined** (an empty value) when no
reference report is positive for it, since no generation could then be right. ``ce_f1``,
``ce_precision`` and ``ce_recall`` are the macro averages over the pathologies where they are defined
(report.md names the undefined ones); ``ce_f1_micro`` pools TP, FP and FN over all of them, undefined
pathologies' false positives included. Replicates sum patient-weighted TP, FP and FN.

**Paired comparisons** (``text_comparisons.csv``: ``protocol,direction,metric,objective_a,objective_b,
diff,ci_low,ci_high,p_value,n_boot,p_holm``). Every objective scores the same queries, pools and
generated-for images, and every replicate is the same patient resample for all of them, so the
difference ``A - B`` of a metric has a paired bootstrap interval and two-sided p-value
(:func:`~radtex_bench.evaluation.stats.paired_comparison`, as comparisons.csv). Retrieval compares the
four metrics per direction (``median_rank``: lower is better, so a negative difference favours A);
generation the language metrics and the four clinical-efficacy averages (``direction`` empty). ``p_holm``
is Holm-adjusted within each protocol's family: all its pairs, directions and metrics.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..data.labels import CHEXPERT_14
from ..io import write_csv
from ..rundir import RunDir
from ..seeds import derive_seed
from ..text.metrics import METRICS, bootstrap_scores, corpus_scores, generation_stats
from .protocols import Cell
from .results import PAIRED_COLUMNS, with_holm
from .stats import paired_comparison, patient_bootstrap_weights, percentile_interval

RETRIEVAL_HEADER = ("objective", "direction", "metric", "value", "ci_low", "ci_high")
CHANCE_HEADER = ("direction", "metric", "value")
GENERATION_HEADER = ("objective", "metric", "value", "ci_low", "ci_high")
GENERATIONS_HEADER = ("objective", "image_id", "reference", "generated")
TEXT_COMPARISONS_HEADER = ("protocol", "direction", "metric", *PAIRED_COLUMNS)
SKIPS_HEADER = ("objective", "protocol", "reason")

DIRECTIONS = ("image_to_report", "report_to_image")
RECALL_AT = (1, 5, 10)
CLINICAL = ("ce_f1", "ce_precision", "ce_recall", "ce_f1_micro")

#: At most this many (replicate x query) cells at once in the weighted median.
_CHUNK_CELLS = 1 << 21


@dataclass(frozen=True)
class BootstrapSettings:
    """``evaluation.bootstrap`` replicates, ``evaluation.confidence``, and the recipe seed."""

    n_boot: int
    confidence: float
    seed: int

    def weights(self, test_patients: np.ndarray) -> np.ndarray | None:
        """``[n_boot, N_test]`` patient draw counts (the resamples of summary.csv), or None for no intervals."""
        if not self.n_boot:
            return None
        return patient_bootstrap_weights(test_patients, self.n_boot, derive_seed(self.seed, "bootstrap"))


def _num(x: float, digits: int = 4) -> float | str:
    return "" if x is None or not np.isfinite(x) else round(float(x), digits)


def _ordered(cells: Sequence[Cell], key: str, order: Sequence[str]) -> list[Cell]:
    rank = {label: i for i, label in enumerate(order)}
    chosen = [c for c in cells if key in c.extra]
    return sorted(chosen, key=lambda c: (rank.get(c.objective, len(rank)), c.objective))


@dataclass(frozen=True)
class Estimate:
    """One metric of one objective: its value on the test set and its ``[n_boot]`` replicates (None
    without a bootstrap). ``direction`` is empty for generation metrics."""

    objective: str
    direction: str
    metric: str
    value: float
    replicates: np.ndarray | None


def _row(settings: BootstrapSettings, value: float, replicates: np.ndarray | None) -> tuple:
    low, high = (
        percentile_interval(replicates, settings.confidence) if replicates is not None else (np.nan, np.nan)
    )
    return _num(value), _num(low), _num(high)


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``[b]`` weighted means of ``values`` ``[n]`` under ``weights`` ``[b, n]``; NaN for all-zero rows."""
    w = weights.astype(np.float64)
    total = w.sum(axis=1)
    return np.divide(w @ values, total, out=np.full(w.shape[0], np.nan), where=total > 0)


def weighted_median(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``[b]`` medians of ``values`` ``[n]`` repeated ``weights[b, i]`` times (integer counts).

    The median of the expanded list: its middle element, or the mean of the two middle ones when its
    length is even (``np.median``'s convention); NaN for a replicate with all weights zero.
    """
    out = np.full(weights.shape[0], np.nan)
    if len(values) == 0:
        return out
    order = np.argsort(values, kind="stable")
    v = values[order].astype(np.float64)
    step = max(1, _CHUNK_CELLS // max(len(v), 1))
    for start in range(0, weights.shape[0], step):
        cum = np.cumsum(weights[start : start + step][:, order], axis=1, dtype=np.int64)  # [b, n]
        total = cum[:, -1]
        lower, upper = (total - 1) // 2, total // 2  # 0-based positions in the expanded list
        a = (cum > lower[:, None]).argmax(axis=1)
        b = (cum > upper[:, None]).argmax(axis=1)
        med = (v[a] + v[b]) / 2
        out[start : start + cum.shape[0]] = np.where(total > 0, med, np.nan)
    return out


# -- retrieval ----------------------------------------------------------------------------------------


def retrieval_estimates(
    cells: Sequence[Cell], weights: np.ndarray | None, order: Sequence[str]
) -> list[Estimate]:
    out = []
    for cell in _ordered(cells, "image_to_report_rank", order):
        for direction in DIRECTIONS:
            ranks = cell.extra[f"{direction}_rank"]
            query = ranks > 0
            r = ranks[query].astype(np.float64)
            w = weights[:, query] if weights is not None else None
            for k in RECALL_AT:
                hit = (r <= k).astype(np.float64)
                value = hit.mean() if len(r) else np.nan
                reps = _weighted_mean(hit, w) if w is not None else None
                out.append(Estimate(cell.objective, direction, f"R@{k}", value, reps))
            value = float(np.median(r)) if len(r) else np.nan
            reps = weighted_median(r, w) if w is not None else None
            out.append(Estimate(cell.objective, direction, "median_rank", value, reps))
    return out


def estimate_rows(estimates: Sequence[Estimate], settings: BootstrapSettings, direction: bool) -> list[tuple]:
    """retrieval.csv rows (``direction``) or generation.csv rows: each value with its percentile interval."""
    return [
        (
            e.objective,
            *((e.direction,) if direction else ()),
            e.metric,
            *_row(settings, e.value, e.replicates),
        )
        for e in estimates
    ]


def retrieval_rows(
    cells: Sequence[Cell], weights: np.ndarray | None, settings: BootstrapSettings, order: Sequence[str]
) -> list[tuple]:
    return estimate_rows(retrieval_estimates(cells, weights, order), settings, direction=True)


def chance_recall(pool_size: np.ndarray, n_correct: np.ndarray, k: int) -> float:
    """Mean over queries of ``P(rank <= k)`` under a uniformly random ranking of each pool."""
    values = [
        1.0 - math.comb(int(m - c), k) / math.comb(int(m), k) if k < m else 1.0
        for m, c in zip(pool_size, n_correct)
    ]
    return float(np.mean(values)) if values else float("nan")


def chance_rows(cells: Sequence[Cell], order: Sequence[str]) -> list[tuple]:
    """Random-ranking Recall@K of the pools (the same for every objective and both directions)."""
    chosen = _ordered(cells, "pool", order)
    if not chosen:
        return []
    pool, n_correct = chosen[0].extra["pool"], chosen[0].extra["n_correct"]
    query = pool >= 0
    sizes = np.bincount(pool[query])[pool[query]]
    return [
        (direction, f"R@{k}", _num(chance_recall(sizes, n_correct[query], k)))
        for direction in DIRECTIONS
        for k in RECALL_AT
    ]


# -- generation ---------------------------------------------------------------------------------------


def clinical_efficacy(
    generated: np.ndarray, reference: np.ndarray, weights: np.ndarray, pathologies: Sequence[str]
) -> dict[str, np.ndarray]:
    """Clinical-efficacy scores ``{name: [b]}`` of labels ``[n, P]`` (1 = positive) under ``weights`` ``[b, n]``.

    Names: :data:`CLINICAL`, then ``ce_f1/<P>``, ``ce_precision/<P>``, ``ce_recall/<P>`` per pathology
    (see the module docstring for the definitions and the undefined cases, which are NaN).
    """
    gen, ref = generated == 1, reference == 1
    w = weights.astype(np.float64)
    tp, fp, fn = (w @ x.astype(np.float64) for x in (gen & ref, gen & ~ref, ~gen & ref))  # [b, P] each
    defined = (tp + fn) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(defined, tp / (tp + fn), np.nan)
        precision = np.where(defined, np.where(tp + fp > 0, tp / (tp + fp), 0.0), np.nan)
        f1 = np.where(defined, 2 * tp / (2 * tp + fp + fn), np.nan)
        pooled = 2 * tp.sum(axis=1) + fp.sum(axis=1) + fn.sum(axis=1)
        micro = np.where(pooled > 0, 2 * tp.sum(axis=1) / pooled, np.nan)

    def macro(x: np.ndarray) -> np.ndarray:
        n = np.isfinite(x).sum(axis=1)
        return np.divide(np.nansum(x, axis=1), n, out=np.full(x.shape[0], np.nan), where=n > 0)

    out = {
        "ce_f1": macro(f1),
        "ce_precision": macro(precision),
        "ce_recall": macro(recall),
        "ce_f1_micro": micro,
    }
    for name, values in (("ce_f1", f1), ("ce_precision", precision), ("ce_recall", recall)):
        for j, p in enumerate(pathologies):
            out[f"{name}/{p}"] = values[:, j]
    return out


def generation_estimates(
    cells: Sequence[Cell], weights: np.ndarray | None, pathologies: Sequence[str], order: Sequence[str]
) -> list[Estimate]:
    out = []
    ce = [p for p in pathologies if p in CHEXPERT_14]
    columns = [CHEXPERT_14.index(p) for p in ce]
    for cell in _ordered(cells, "generated", order):
        x = cell.extra
        w = weights[:, x["test_index"]] if weights is not None else None
        stats = generation_stats([str(t) for t in x["generated"]], [str(t) for t in x["reference"]])
        observed = corpus_scores(stats)
        replicates = bootstrap_scores(stats, w) if w is not None else None
        for name in METRICS:
            reps = replicates[name] if replicates is not None else None
            out.append(Estimate(cell.objective, "", name, observed[name], reps))
        gen, ref = x["generated_labels"][:, columns], x["reference_labels"][:, columns]
        ones = np.ones((1, gen.shape[0]), dtype=np.int64)
        observed = {k: v[0] for k, v in clinical_efficacy(gen, ref, ones, ce).items()}
        replicates = clinical_efficacy(gen, ref, w, ce) if w is not None else None
        for name, value in observed.items():
            reps = replicates[name] if replicates is not None else None
            out.append(Estimate(cell.objective, "", name, value, reps))
    return out


#: The generation metrics compared between objectives (per-pathology CE is left to generation.csv).
COMPARED_GENERATION = (*METRICS, *CLINICAL)


def comparison_rows(protocol: str, estimates: Sequence[Estimate], settings: BootstrapSettings) -> list[tuple]:
    """Paired differences ``A - B`` of every metric between every two objectives (``A`` before ``B`` in
    the estimates' order), rows of :data:`TEXT_COMPARISONS_HEADER` without ``p_holm``; none without a
    bootstrap."""
    rows = []
    keys = dict.fromkeys((e.direction, e.metric) for e in estimates)
    for direction, metric in keys:
        if protocol == "generation" and metric not in COMPARED_GENERATION:
            continue
        same = [e for e in estimates if (e.direction, e.metric) == (direction, metric)]
        for a, b in itertools.combinations(same, 2):
            diff = a.value - b.value
            if a.replicates is None or b.replicates is None or not np.isfinite(diff):
                continue
            res = paired_comparison(a.replicates, b.replicates, diff, settings.confidence)
            rows.append(
                (
                    protocol,
                    direction,
                    metric,
                    a.objective,
                    b.objective,
                    _num(res["diff"]),
                    _num(res["ci_low"]),
                    _num(res["ci_high"]),
                    _num(res["p_value"], 5),
                    res["n_boot"],
                )
            )
    return rows


def generations_rows(cells: Sequence[Cell], order: Sequence[str]) -> list[tuple]:
    return [
        (cell.objective, str(i), str(r), str(g))
        for cell in _ordered(cells, "generated", order)
        for i, r, g in zip(cell.extra["image_id"], cell.extra["reference"], cell.extra["generated"])
    ]


# -- files --------------------------------------------------------------------------------------------


def _write_or_remove(path, header: Sequence[str], rows: list[tuple]) -> None:
    """A table with rows is written; without any (protocol not run) a stale one from a resumed run goes."""
    if rows:
        write_csv(path, header, rows)
    else:
        path.unlink(missing_ok=True)


def write_text_tables(
    paths: RunDir,
    cells: Sequence[Cell],
    test_patients: np.ndarray,
    pathologies: Sequence[str],
    settings: BootstrapSettings,
    order: Sequence[str],
) -> None:
    """Write retrieval.csv, retrieval_chance.csv, generation.csv, generations.csv and
    text_comparisons.csv from ``cells``.

    ``test_patients`` ``[N_test]``: patient id of each test image, in the order of the cells' test
    positions; ``pathologies``: the scored ones (clinical efficacy uses those that are CheXpert labels).
    """
    weights = settings.weights(np.asarray(test_patients))
    retrieval = retrieval_estimates(cells, weights, order)
    generation = generation_estimates(cells, weights, pathologies, order)
    _write_or_remove(paths.retrieval, RETRIEVAL_HEADER, estimate_rows(retrieval, settings, direction=True))
    _write_or_remove(paths.retrieval_chance, CHANCE_HEADER, chance_rows(cells, order))
    _write_or_remove(
        paths.generation, GENERATION_HEADER, estimate_rows(generation, settings, direction=False)
    )
    _write_or_remove(paths.generations, GENERATIONS_HEADER, generations_rows(cells, order))
    comparisons = comparison_rows("retrieval", retrieval, settings)
    comparisons += comparison_rows("generation", generation, settings)
    _write_or_remove(
        paths.text_comparisons, TEXT_COMPARISONS_HEADER, with_holm(comparisons, lambda row: row[0], 8)
    )


def write_skips(paths: RunDir, skipped: Sequence) -> None:
    """``protocol_skips.csv``: each (objective, protocol) a protocol could not score, and why."""
    _write_or_remove(
        paths.protocol_skips, SKIPS_HEADER, [(s.objective, s.protocol, s.reason) for s in skipped]
    )
