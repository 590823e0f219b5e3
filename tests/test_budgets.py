"""Label-budget subsets: sizes, nesting, whole patients, stratification, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest

from radtex_bench.errors import UserError
from radtex_bench.evaluation.budgets import image_ordering, sample_budget_subsets, subset_summary

BUDGETS = [10, 50, 100, 250]


def make_pool(seed: int, n_patients: int = 700, n_path: int = 9, max_images: int = 2, nan_frac: float = 0.0):
    """Patients with 1..max_images images; pathology prevalences from 5% to 20%."""
    rng = np.random.default_rng(seed)
    per_patient = rng.integers(1, max_images + 1, n_patients)
    pids = np.repeat(np.array([f"pt{i:05d}" for i in range(n_patients)]), per_patient)
    prevalence = np.linspace(0.05, 0.20, n_path)
    labels = (rng.random((pids.size, n_path)) < prevalence).astype(np.float32)
    labels[rng.random(labels.shape) < nan_frac] = np.nan
    # interleave patients' rows so that nothing relies on contiguous patients
    perm = rng.permutation(pids.size)
    return pids[perm], labels[perm]


def test_exact_sizes_sorted_unique_rows():
    pids, labels = make_pool(0)
    subsets = sample_budget_subsets(pids, labels, BUDGETS, seed=0)
    assert list(subsets) == BUDGETS
    for b, rows in subsets.items():
        assert rows.dtype == np.int64
        assert rows.size == b
        assert np.all(np.diff(rows) > 0)  # sorted, no duplicates
        assert rows.min() >= 0 and rows.max() < pids.size


def test_full_pool_budget_takes_everything():
    pids, labels = make_pool(1, n_patients=50)
    rows = sample_budget_subsets(pids, labels, [pids.size], seed=3)[pids.size]
    np.testing.assert_array_equal(rows, np.arange(pids.size))


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_nested_across_budgets(seed):
    pids, labels = make_pool(seed, nan_frac=0.2, max_images=3)
    budgets = [1, 5, 10, 11, 50, 100, 250, 600]
    subsets = sample_budget_subsets(pids, labels, budgets, seed=seed)
    for small, large in zip(budgets, budgets[1:], strict=False):
        assert set(subsets[small]) <= set(subsets[large])
    # budgets requested separately give the same subsets as requested together
    alone = sample_budget_subsets(pids, labels, [50], seed=seed)[50]
    np.testing.assert_array_equal(alone, subsets[50])


@pytest.mark.parametrize("seed", [0, 2])
def test_whole_patients_except_at_most_one(seed):
    pids, labels = make_pool(seed, max_images=4)
    for b, rows in sample_budget_subsets(pids, labels, [3, 10, 37, 100, 251], seed=seed).items():
        taken, counts = np.unique(pids[rows], return_counts=True)
        totals = np.array([np.count_nonzero(pids == p) for p in taken])
        partial = taken[counts < totals]
        assert partial.size <= 1, f"budget {b}: patients split {partial}"


def test_deterministic_and_seed_sensitive():
    pids, labels = make_pool(0)
    first = sample_budget_subsets(pids, labels, BUDGETS, seed=5)
    again = sample_budget_subsets(pids.copy(), labels.copy(), BUDGETS, seed=5)
    for b in BUDGETS:
        np.testing.assert_array_equal(first[b], again[b])
    other = sample_budget_subsets(pids, labels, BUDGETS, seed=6)
    for b in BUDGETS:
        assert not np.array_equal(first[b], other[b])


def test_patient_order_independent_of_row_order():
    pids, labels = make_pool(4, max_images=3)
    perm = np.random.default_rng(0).permutation(pids.size)

    def patient_sequence(p, y):
        seq = p[image_ordering(p, y, seed=2)]
        _, first = np.unique(seq, return_index=True)
        return seq[np.sort(first)]

    np.testing.assert_array_equal(patient_sequence(pids, labels), patient_sequence(pids[perm], labels[perm]))


@pytest.mark.parametrize("nan_frac", [0.0, 0.3])
def test_stratified_budget_10_covers_every_pathology(nan_frac):
    # 9 pathologies at 5-20% prevalence, 1-2 images per patient: every pathology gets a positive and a
    # negative at budget 10, for every pool and seed tried.
    for seed in range(25):
        pids, labels = make_pool(seed, nan_frac=nan_frac)
        assert np.all((labels == 1).any(axis=0))
        rows = sample_budget_subsets(pids, labels, [10], seed=seed)[10]
        sub = labels[rows]
        assert np.all((sub == 1).any(axis=0)), f"seed {seed}: positives {(sub == 1).sum(axis=0)}"
        assert np.all((sub == 0).any(axis=0)), f"seed {seed}: negatives {(sub == 0).sum(axis=0)}"


def test_rare_positive_and_rare_negative_come_first():
    # Pathology 0 has a single positive image, held by a 3-image patient; pathology 1 a single
    # negative image. The rarest-first passes put them at the front, lead image first.
    n = 200
    pids = np.array([f"p{i // 2}" for i in range(n)])
    labels = np.zeros((n, 3), dtype=np.float32)
    labels[:, 1] = 1.0
    pids[[50, 51, 120]] = "rare"
    labels[120, 0] = 1.0
    labels[77, 1] = 0.0
    labels[:, 2] = np.nan  # a pathology with no labels at all is simply skipped
    for seed in range(5):
        order = image_ordering(pids, labels, seed)
        assert order[0] == 120  # the lead image of the patient drawn for pathology 0
        assert set(order[:3]) == {50, 51, 120}  # then the rest of that patient
        np.testing.assert_array_equal(order[3:5], [77, 76])  # the patient drawn for pathology 1's negative
        rows = sample_budget_subsets(pids, labels, [1, 4], seed)
        np.testing.assert_array_equal(rows[1], [120])
        np.testing.assert_array_equal(rows[4], [50, 51, 77, 120])


def test_budget_larger_than_pool_is_a_user_error():
    pids, labels = make_pool(0, n_patients=50)
    n = pids.size
    with pytest.raises(UserError) as info:
        sample_budget_subsets(pids, labels, [10, 5000], seed=0)
    message = str(info.value)
    assert "evaluation.budgets" in message and "5000" in message and str(n) in message
    for bad in (0, -3, 2.5, True):
        with pytest.raises(UserError, match="positive integer"):
            sample_budget_subsets(pids, labels, [bad], seed=0)


def test_rejects_unmapped_uncertain_labels():
    pids, labels = make_pool(0, n_patients=20)
    labels[3, 2] = -1.0
    with pytest.raises(ValueError, match="uncertain"):
        sample_budget_subsets(pids, labels, [5], seed=0)


def test_subset_summary_counts():
    labels = np.array([[1, 0], [0, np.nan], [1, np.nan], [np.nan, 0]], dtype=np.float32)
    pids = np.array(["a", "a", "b", "c"])
    summary = subset_summary(
        labels, np.array([0, 1, 2]), pathologies=["Edema", "Pneumonia"], patient_ids=pids
    )
    assert summary == {
        "n_images": 3,
        "n_patients": 2,
        "positives": {"Edema": 2, "Pneumonia": 0},
        "negatives": {"Edema": 1, "Pneumonia": 1},
        "missing": {"Edema": 0, "Pneumonia": 2},
        "without_positive": ["Pneumonia"],
        "without_negative": [],
    }
    assert subset_summary(labels, np.array([3]))["positives"] == {"0": 0, "1": 0}
