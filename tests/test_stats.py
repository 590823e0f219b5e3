"""AUROC, patient bootstrap, intervals, paired comparisons, mean/std."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from radtex_bench.evaluation.stats import (
    auroc,
    macro_auroc,
    macro_auroc_bootstrap,
    mean_std,
    paired_comparison,
    patient_bootstrap_weights,
    percentile_interval,
    weighted_auroc,
)


def test_auroc_matches_sklearn_with_ties_and_missing_labels():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(5, 400))
        labels = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(np.float64)
        labels[rng.random(n) < 0.2] = np.nan
        scores = np.round(rng.normal(size=n) + np.nan_to_num(labels), int(rng.integers(0, 2)))  # many ties
        known = ~np.isnan(labels)
        if len(np.unique(labels[known])) < 2:
            continue
        assert abs(auroc(scores, labels) - roc_auc_score(labels[known], scores[known])) < 1e-9, trial


def test_auroc_edge_cases():
    assert auroc(np.array([0.1, 0.9]), np.array([0.0, 1.0])) == 1.0
    assert auroc(np.array([0.9, 0.1]), np.array([0.0, 1.0])) == 0.0
    assert auroc(np.array([0.5, 0.5]), np.array([0.0, 1.0])) == 0.5
    assert math.isnan(auroc(np.array([0.1, 0.2, 0.3]), np.array([1.0, 1.0, 1.0])))
    assert math.isnan(auroc(np.array([0.1, 0.2, 0.3]), np.array([0.0, np.nan, 0.0])))
    assert math.isnan(auroc(np.array([0.1, 0.2]), np.array([np.nan, np.nan])))
    assert math.isnan(auroc(np.array([]), np.array([])))
    # a NaN score is fine where the label is missing, an error where it is not
    assert auroc(np.array([0.1, np.nan, 0.9]), np.array([0.0, np.nan, 1.0])) == 1.0
    with pytest.raises(ValueError, match="finite"):
        auroc(np.array([0.1, np.nan]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="1, 0 or NaN"):
        auroc(np.array([0.1, 0.2]), np.array([0.0, -1.0]))


def test_weighted_auroc_equals_auroc_of_repeated_images():
    rng = np.random.default_rng(1)
    n = 300
    labels = (rng.random(n) < 0.3).astype(np.float64)
    labels[rng.random(n) < 0.1] = np.nan
    scores = np.round(rng.normal(size=n) + np.nan_to_num(labels), 1)
    weights = rng.integers(0, 4, size=(25, n))
    got = weighted_auroc(scores, labels, weights)
    for w, value in zip(weights, got, strict=True):
        rep = np.repeat(np.arange(n), w)
        known = rep[~np.isnan(labels[rep])]
        assert abs(value - roc_auc_score(labels[known], scores[known])) < 1e-9
    assert weighted_auroc(scores, labels, np.ones((1, n)))[0] == pytest.approx(
        auroc(scores, labels), abs=1e-12
    )


def test_weighted_auroc_undefined_replicates_are_nan():
    scores = np.array([0.1, 0.2, 0.8, 0.9])
    labels = np.array([0.0, 0.0, 1.0, 1.0])
    weights = np.array([[1, 1, 1, 1], [2, 1, 0, 0], [0, 0, 0, 0], [0, 1, 1, 0]])
    got = weighted_auroc(scores, labels, weights)
    assert got[0] == 1.0 and math.isnan(got[1]) and math.isnan(got[2]) and got[3] == 1.0
    with pytest.raises(ValueError, match="shape"):
        weighted_auroc(scores, labels, np.ones((2, 3)))


def test_bootstrap_resamples_patients():
    pids = np.array(["c", "a", "b", "a", "c", "c", "d"])
    w = patient_bootstrap_weights(pids, 500, seed=0)
    assert w.shape == (500, 7) and np.issubdtype(w.dtype, np.integer) and w.min() >= 0
    for p in np.unique(pids):
        cols = w[:, pids == p]
        assert np.all(cols == cols[:, :1])  # images of one patient share their patient's count
    first = [np.flatnonzero(pids == p)[0] for p in np.unique(pids)]
    assert np.all(w[:, first].sum(axis=1) == 4)  # 4 patients drawn per replicate
    np.testing.assert_array_equal(w, patient_bootstrap_weights(pids, 500, seed=0))
    assert not np.array_equal(w, patient_bootstrap_weights(pids, 500, seed=1))
    # per-patient counts do not depend on row order
    perm = np.array([6, 2, 0, 5, 1, 3, 4])
    np.testing.assert_array_equal(patient_bootstrap_weights(pids[perm], 500, seed=0), w[:, perm])
    # each patient is drawn about once per replicate on average
    assert np.allclose(w[:, first].mean(axis=0), 1.0, atol=0.15)


def _test_set(rng: np.random.Generator, n_patients: int = 500, n_path: int = 9, signal: float = 0.0):
    pids = np.repeat(np.arange(n_patients), 2).astype(str)
    labels = (rng.random((pids.size, n_path)) < 0.3).astype(np.float64)
    scores = rng.normal(size=labels.shape) + signal * labels
    return pids, labels, scores


def test_perfect_scorer_interval_is_one():
    rng = np.random.default_rng(2)
    pids, labels, _ = _test_set(rng)
    scores = labels + 0.01 * rng.random(labels.shape)
    boot = macro_auroc_bootstrap(scores, labels, patient_bootstrap_weights(pids, 300, seed=0))
    assert macro_auroc(scores, labels) == 1.0
    assert percentile_interval(boot) == (1.0, 1.0)


def test_random_scorer_interval_contains_half_with_expected_width():
    rng = np.random.default_rng(3)
    n = 1000  # one image per patient, balanced classes
    pids = np.arange(n).astype(str)
    labels = np.repeat([0.0, 1.0], n // 2)
    scores = rng.normal(size=n)
    boot = weighted_auroc(scores, labels, patient_bootstrap_weights(pids, 2000, seed=0))
    low, high = percentile_interval(boot)
    assert low < 0.5 < high
    # Hanley-McNeil standard error at AUC 0.5: sqrt((0.25 + (n1 - 1 + n0 - 1) / 12) / (n1 n0))
    se = math.sqrt((0.25 + (n - 2) / 12) / (n // 2) ** 2)
    assert 0.8 * 2 * 1.96 * se < high - low < 1.2 * 2 * 1.96 * se


def test_macro_bootstrap_averages_defined_pathologies():
    scores = np.array([[0.1, 0.1], [0.9, 0.9], [0.2, 0.5], [0.8, 0.5]])
    labels = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, np.nan], [1.0, np.nan]])
    weights = np.array([[1, 1, 1, 1], [0, 0, 1, 1], [1, 0, 1, 0]])
    got = macro_auroc_bootstrap(scores, labels, weights)
    assert got[0] == pytest.approx(0.5)  # mean of pathology 0 (1.0) and pathology 1 (0.0)
    assert got[1] == 1.0  # pathology 1 undefined: only pathology 0 counts
    assert math.isnan(got[2])  # no pathology defined
    assert macro_auroc(scores, labels) == pytest.approx(0.5)


def test_percentile_interval_ignores_nan():
    samples = np.concatenate([np.arange(101, dtype=float) / 100, [np.nan] * 50])
    assert percentile_interval(samples) == pytest.approx((0.025, 0.975))
    assert percentile_interval(samples, confidence=0.5) == pytest.approx((0.25, 0.75))
    low, high = percentile_interval(np.array([np.nan, np.nan]))
    assert math.isnan(low) and math.isnan(high)


def test_paired_comparison():
    rng = np.random.default_rng(4)
    pids, labels, noise = _test_set(rng, n_patients=300)
    good = noise + 1.0 * labels
    weak = rng.normal(size=labels.shape) + 0.3 * labels
    weights = patient_bootstrap_weights(pids, 1000, seed=0)
    a = macro_auroc_bootstrap(good, labels, weights)
    b = macro_auroc_bootstrap(weak, labels, weights)
    observed = macro_auroc(good, labels) - macro_auroc(weak, labels)

    better = paired_comparison(a, b, observed)
    assert better["diff"] == observed > 0
    assert 0 < better["ci_low"] < observed < better["ci_high"]
    assert better["p_value"] < 0.05
    assert better["p_value"] == pytest.approx(2 / 1001)  # no replicate favours the weak scorer
    assert better["n_boot"] == 1000

    swapped = paired_comparison(b, a, -observed)
    assert swapped["diff"] == -better["diff"]
    assert swapped["ci_low"] == pytest.approx(-better["ci_high"], abs=1e-12)
    assert swapped["ci_high"] == pytest.approx(-better["ci_low"], abs=1e-12)
    assert swapped["p_value"] == better["p_value"]

    same = paired_comparison(a, a.copy(), 0.0)
    assert same["diff"] == 0.0 and same["ci_low"] == 0.0 and same["ci_high"] == 0.0
    assert same["p_value"] == 1.0

    # two equally good but different scorers: no evidence of a difference
    other = macro_auroc_bootstrap(rng.normal(size=labels.shape) + 1.0 * labels, labels, weights)
    assert paired_comparison(a, other, 0.0)["p_value"] > 0.01

    empty = paired_comparison(np.array([np.nan]), np.array([0.5]), 0.1)
    assert math.isnan(empty["p_value"]) and math.isnan(empty["ci_low"]) and empty["n_boot"] == 0


def test_mean_std():
    assert mean_std([0.7, 0.8, np.nan, 0.9]) == pytest.approx((0.8, 0.1))
    for one in ([0.75], [0.75, np.nan]):  # one seed: no spread, not a spread of 0
        mean, std = mean_std(one)
        assert mean == 0.75 and math.isnan(std)
    assert all(math.isnan(v) for v in mean_std([]))
    assert all(math.isnan(v) for v in mean_std([np.nan, np.nan]))


def test_bootstrap_speed():
    rng = np.random.default_rng(5)
    pids, labels, scores = _test_set(rng, n_patients=500, signal=0.5)  # 1000 images, 9 pathologies
    labels[rng.random(labels.shape) < 0.1] = np.nan
    scores = np.round(scores, 2)
    start = time.perf_counter()
    weights = patient_bootstrap_weights(pids, 2000, seed=0)
    boot = macro_auroc_bootstrap(scores, labels, weights)
    elapsed = time.perf_counter() - start
    assert boot.shape == (2000,) and np.all(np.isfinite(boot))
    assert elapsed < 10.0, f"2000 replicates took {elapsed:.1f} s"


def test_report_marks_the_bootstrap_floor_as_an_upper_bound():
    import pandas as pd

    from radtex_bench.reporting.report import comparisons_markdown

    base = {"protocol": "linear", "budget": 10, "objective_a": "a", "objective_b": "b", "diff": 0.1}
    rows = [
        {**base, "ci_low": 0.05, "ci_high": 0.15, "p_value": round(2 / 1001, 5), "n_boot": 1000},
        {**base, "ci_low": -0.01, "ci_high": 0.15, "p_value": 0.0412, "n_boot": 1000},
        {**base, "ci_low": 0.05, "ci_high": 0.15, "p_value": round(2 / 1001, 5), "n_boot": 4000},
    ]
    floor, ordinary, more_replicates = comparisons_markdown(pd.DataFrame(rows)).splitlines()[2:]
    assert floor.endswith("| ≤ 0.0020 * |")
    assert ordinary.endswith("| 0.0412 * |")
    assert more_replicates.endswith("| 0.0020 * |")  # 4000 replicates could have shown a smaller p
    # A comparisons.csv written before the n_boot column still renders.
    old = pd.DataFrame(rows).drop(columns="n_boot")
    assert comparisons_markdown(old).splitlines()[2].endswith("| 0.0020 * |")


def test_report_stars_follow_the_holm_adjusted_p_not_the_raw_one():
    import pandas as pd

    from radtex_bench.reporting.report import comparisons_markdown

    base = {"protocol": "linear", "budget": 10, "objective_a": "a", "objective_b": "b", "diff": 0.1}
    base |= {"ci_low": 0.01, "ci_high": 0.2, "n_boot": 1000}
    rows = [
        {**base, "p_value": 0.01, "p_holm": 0.03},  # significant after adjustment
        {**base, "p_value": 0.02, "p_holm": 0.06},  # significant raw, not after adjustment
    ]
    kept, lost = comparisons_markdown(pd.DataFrame(rows)).splitlines()[2:]
    assert kept.endswith("| 0.0100 | 0.0300 * |")
    assert lost.endswith("| 0.0200 | 0.0600 |")


def test_report_shows_no_spread_for_a_single_seed():
    import pandas as pd

    from radtex_bench.reporting.report import summary_markdown

    base = {"protocol": "linear", "budget": 10, "ci_low": 0.6, "ci_high": 0.8}
    summary = pd.DataFrame(
        [
            {**base, "objective": "one_seed", "macro_auc": 0.7, "macro_auc_std": float("nan")},
            {**base, "objective": "three_seeds", "macro_auc": 0.65, "macro_auc_std": 0.02},
        ]
    )
    lines = summary_markdown(summary, ["one_seed", "three_seeds"]).splitlines()
    one, three = lines[4:6]
    assert one == "| one_seed | **0.700** [0.600, 0.800] |"
    assert three == "| three_seeds | 0.650 ± 0.020 [0.600, 0.800] |"
    assert lines[0].endswith("test split, mean ± std over seeds [95% patient-bootstrap interval]")
    # No cell with a spread: the caption does not promise one.
    caption = summary_markdown(summary.iloc[:1], ["one_seed"]).splitlines()[0]
    assert caption == "**linear protocol**: macro AUROC on the test split [95% patient-bootstrap interval]"


def test_summary_marks_cells_whose_macro_averages_fewer_pathologies():
    import pandas as pd

    from radtex_bench.reporting.report import partial_cells, summary_markdown

    results = pd.DataFrame(
        {
            "objective": ["a", "a", "b", "b"],
            "protocol": ["linear"] * 4,
            "budget": [4, 4, 4, 4],
            "seed": [0, 0, 0, 0],
            "pathology": ["X", "Y", "X", "Y"],
            "auc": [0.7, float("nan"), 0.6, 0.65],
        }
    )
    partial = partial_cells(results)
    assert partial == {("a", "linear", 4)}
    base = {"protocol": "linear", "budget": 4, "ci_low": 0.5, "ci_high": 0.8, "macro_auc_std": 0.01}
    summary = pd.DataFrame(
        [{**base, "objective": "a", "macro_auc": 0.7}, {**base, "objective": "b", "macro_auc": 0.625}]
    )
    text = summary_markdown(summary, ["a", "b"], None, partial)
    a, b = text.splitlines()[4:6]
    assert a.endswith("† |") and not b.endswith("† |")
    assert "† In some seed the labelled subset could not score every pathology" in text
    assert "†" not in summary_markdown(summary, ["a", "b"])
    from radtex_bench.reporting.efficiency import auprc_markdown

    summary["macro_auprc"], summary["auprc_ci_low"], summary["auprc_ci_high"] = 0.4, 0.3, 0.5
    rows = [
        line
        for line in auprc_markdown(summary, ["a", "b"], None, partial).splitlines()
        if line.startswith("| ")
    ]
    assert rows[-2].endswith("† |") and not rows[-1].endswith("† |")


def test_report_warns_when_no_comparison_can_pass_holm():
    import pandas as pd

    from radtex_bench.reporting.report import holm_floor_note

    def family(m: int, n_boot: int) -> pd.DataFrame:
        return pd.DataFrame(
            {"protocol": ["linear"] * m, "p_value": [0.002] * m, "p_holm": [1.0] * m, "n_boot": n_boot}
        )

    assert holm_floor_note(family(12, 1000)) == []  # 12 x 2/1001 = 0.024 < 0.05: stars are possible
    (note,) = holm_floor_note(family(544, 1000))  # 17 objectives x 4 budgets
    assert "No linear comparison can be significant" in note and "544 × 2/(1000+1) = 1.000" in note
    assert "at least 21,760" in note
    assert holm_floor_note(family(544, 25000)) == []
