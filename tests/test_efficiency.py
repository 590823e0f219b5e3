"""Label efficiency (issue 16): AUPRC, Holm, labels-to-match, AUBC, percentage budgets, fixed subsets."""

from __future__ import annotations

import csv
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from radtex_bench.config import recipe_from_dict
from radtex_bench.errors import ConfigError, DataError
from radtex_bench.evaluation.budgets import canonical_percent, resolve_budget, resolve_budgets
from radtex_bench.evaluation.efficiency import (
    Efficiency,
    area_under_budget_curve,
    censored_interval,
    labels_to_match,
    monotone,
)
from radtex_bench.evaluation.fixed_subsets import fixed_subsets
from radtex_bench.evaluation.protocols import Cell
from radtex_bench.evaluation.results import Summariser, with_holm
from radtex_bench.evaluation.stats import (
    average_precision,
    holm,
    macro_auprc_bootstrap,
    weighted_average_precision,
)

# -- AUPRC -------------------------------------------------------------------------------------------


def test_weighted_average_precision_matches_sklearn_sample_weight():
    rng = np.random.default_rng(0)
    for trial in range(25):
        n = int(rng.integers(5, 300))
        labels = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(np.float64)
        labels[rng.random(n) < 0.15] = np.nan
        scores = np.round(rng.normal(size=n) + np.nan_to_num(labels), int(rng.integers(0, 2)))  # ties
        weights = rng.integers(0, 4, size=(12, n))
        got = weighted_average_precision(scores, labels, weights)
        known = ~np.isnan(labels)
        for b in range(len(weights)):
            if (weights[b][known] * labels[known]).sum() == 0:
                assert math.isnan(got[b])  # no positive: undefined, never 0
                continue
            expected = average_precision_score(labels[known], scores[known], sample_weight=weights[b][known])
            assert got[b] == pytest.approx(expected, abs=1e-12), (trial, b)


def test_average_precision_edge_cases():
    assert average_precision(np.array([0.9, 0.1]), np.array([1.0, 0.0])) == 1.0
    assert average_precision(np.array([0.1, 0.9]), np.array([1.0, 0.0])) == 0.5
    assert math.isnan(average_precision(np.array([0.1, 0.9]), np.array([0.0, 0.0])))
    assert math.isnan(average_precision(np.array([0.1, 0.9]), np.array([np.nan, np.nan])))
    # all tied: precision is the prevalence at the single threshold
    assert average_precision(np.zeros(4), np.array([1.0, 0.0, 0.0, 0.0])) == 0.25


def test_macro_auprc_bootstrap_with_unit_weights_is_the_mean_of_sklearn_aps():
    rng = np.random.default_rng(1)
    labels = (rng.random((80, 3)) < 0.3).astype(float)
    labels[0, :] = 1.0
    scores = rng.normal(size=(80, 3)) + labels
    got = macro_auprc_bootstrap(scores, labels, np.ones((1, 80), dtype=np.int32))[0]
    expected = np.mean([average_precision_score(labels[:, p], scores[:, p]) for p in range(3)])
    assert got == pytest.approx(expected, abs=1e-12)


# -- Holm --------------------------------------------------------------------------------------------


def holm_by_rejection(p: np.ndarray) -> np.ndarray:
    """Adjusted p from the definition: the smallest level at which Holm's step-down procedure rejects."""
    m = len(p)
    order = np.argsort(p, kind="stable")
    levels = sorted({min(1.0, (m - j) * p[i]) for j, i in enumerate(order)} | {1.0})
    out = np.ones(m)
    for i in range(m):
        for alpha in levels:
            rejected = set()
            for j, k in enumerate(order):  # step down: stop at the first acceptance
                if p[k] * (m - j) > alpha + 1e-12:  # p_(j) > alpha / (m - j + 1), 1-based
                    break
                rejected.add(k)
            if i in rejected:
                out[i] = alpha
                break
    return out


def test_holm_matches_the_step_down_procedure():
    rng = np.random.default_rng(2)
    for _ in range(30):
        m = int(rng.integers(1, 9))
        p = np.round(rng.random(m) ** 2, 3)  # rounding makes ties
        got = holm(p)
        assert np.allclose(got, holm_by_rejection(p), atol=1e-12)
        assert (got >= p).all()
        order = np.argsort(p, kind="stable")
        assert (np.diff(got[order]) >= 0).all()  # monotone in p


def test_holm_nan_is_not_a_test_and_families_are_separate():
    assert np.allclose(holm(np.array([0.01, np.nan, 0.02])), [0.02, np.nan, 0.02], equal_nan=True)
    rows = [("linear", 10, 0.01), ("linear", 50, 0.04), ("knn", 10, 0.01), ("linear", 100, "")]
    out = with_holm(rows, family=lambda r: r[0], p_index=2)
    assert [r[-1] for r in out] == [0.02, 0.04, 0.01, ""]  # the empty p is not a test: m = 2


# -- labels-to-match and AUBC ------------------------------------------------------------------------


def test_labels_to_match_interpolates_on_log_budget_and_censors_both_ends():
    budgets = [10, 100, 1000]
    curve = np.array([[0.6, 0.7, 0.8]])
    got = [labels_to_match(np.array([a]), budgets, curve)[0] for a in (0.75, 0.7, 0.55, 0.6, 0.85, np.nan)]
    assert got[0] == pytest.approx(10**2.5)  # halfway between 0.7 and 0.8 on log budget
    assert got[1] == pytest.approx(100.0)
    assert got[2] == got[3] == 10.0  # reached at the first budget: written as that budget
    assert got[4] == math.inf and math.isnan(got[5])


def test_monotone_curve_pools_adjacent_violators():
    fitted = monotone(np.array([[0.7, 0.65, 0.8], [0.5, np.nan, 0.9]]))
    assert np.allclose(fitted[0], [0.675, 0.675, 0.8]) and np.isnan(fitted[1]).all()
    # a dip in the reference no longer lets it "reach" 0.68 at the first budget
    x = labels_to_match(np.array([0.68]), [10, 100, 1000], fitted[:1])[0]
    assert 100 < x < 1000


def test_area_under_budget_curve():
    budgets = [10, 100, 1000]
    assert area_under_budget_curve(budgets, np.full((1, 3), 0.7))[0] == pytest.approx(0.7)
    # uneven log spacing: trapezoids weighted by their log-budget width
    b = [10, 20, 1000]
    f = np.array([[0.5, 0.6, 0.9]])
    w = np.diff(np.log(b))
    expected = ((0.5 + 0.6) / 2 * w[0] + (0.6 + 0.9) / 2 * w[1]) / np.log(100)
    assert area_under_budget_curve(b, f)[0] == pytest.approx(expected)
    assert area_under_budget_curve([50], np.array([[0.8]]))[0] == 0.8
    assert math.isnan(area_under_budget_curve(budgets, np.array([[0.5, np.nan, 0.7]]))[0])


def test_aubc_comparisons_show_the_bootstrap_floor_as_an_upper_bound():
    """As in the main comparison table: p at 2/(B+1) is "≤", and significance is read on Holm's p."""
    import pandas as pd

    from radtex_bench.evaluation.efficiency import AUBC_COMPARISONS_HEADER, AUBC_HEADER
    from radtex_bench.reporting.efficiency import aubc_markdown

    aubc = pd.DataFrame(
        [(label, "linear", 0.7, 0.6, 0.8, 10, 100, 3) for label in "abc"], columns=AUBC_HEADER
    )
    nan = float("nan")
    comparisons = pd.DataFrame(
        [
            ("linear", "a", "b", 0.05, 0.01, 0.09, 2 / 1001, 1000, 0.01),
            ("linear", "a", "c", 0.01, -0.02, 0.04, 0.31, 1000, 0.31),
            ("linear", "b", "c", 0.0, -0.03, 0.03, nan, 1000, nan),
        ],
        columns=AUBC_COMPARISONS_HEADER,
    )
    table = aubc_markdown(aubc, comparisons, ["a", "b", "c"]).splitlines()
    rows = [
        line
        for line in table
        if line.startswith(("| linear | a | b |", "| linear | a | c |", "| linear | b | c |"))
    ]
    assert rows[0].endswith("| ≤ 0.0020 | 0.0100 * |")
    assert rows[1].endswith("| 0.3100 | 0.3100 |")
    assert rows[2].endswith("| n/a | n/a |")


def test_censored_interval():
    x = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    assert censored_interval(x, 0.5) == pytest.approx(tuple(np.percentile(x[:4], [25, 75])))
    assert censored_interval(np.array([1.0, 2.0, np.inf, np.inf]), 0.5) == (1.75, math.inf)
    assert censored_interval(np.full(3, np.inf), 0.9) == (math.inf, math.inf)


def fake_summariser(protocols=("linear", "zeroshot"), n_boot=200):
    """Three objectives with known curves on a synthetic test set; a budget-0 zeroshot group too."""
    rng = np.random.default_rng(3)
    n = 300
    labels = (rng.random((n, 2)) < 0.4).astype(float)
    data = SimpleNamespace(
        labels=labels, test=np.arange(n), test_patients=np.array([f"p{i // 2}" for i in range(n)])
    )
    evaluation = SimpleNamespace(bootstrap=n_boot, confidence=0.95, protocols=protocols)
    recipe = SimpleNamespace(seed=0, evaluation=evaluation)
    signal = {"strong": [1.0, 1.6, 2.2], "weak": [0.3, 0.7, 1.1], "flat": [0.5, 0.5, 0.5]}
    cells = []
    for objective, strengths in signal.items():
        for budget, strength in zip([10, 50, 250], strengths, strict=True):
            for seed in range(2):
                scores = labels * strength + rng.normal(size=labels.shape)
                aucs = np.array([0.0, 0.0])  # only finiteness matters to the summariser
                cells.append(Cell(objective, "linear", budget, seed, aucs, scores.astype(np.float32)))
    cells.append(Cell("strong", "zeroshot", 0, 0, np.zeros(2), rng.normal(size=labels.shape)))
    from radtex_bench.evaluation.protocols.base import score_pathologies

    for c in cells:
        c.aucs = score_pathologies(c.scores, labels)
    return Summariser(recipe, data, cells, order=list(signal))


def test_efficiency_rows_contain_their_estimates_and_skip_budget_zero():
    eff = Efficiency(fake_summariser())
    assert eff.efficiency_protocol() == "linear" and eff.budgets("linear") == [10, 50, 250]
    rows = eff.efficiency_rows()
    assert len(rows) == 3 * 2 * 3  # ordered pairs x budgets
    assert all(r[2] > 0 for r in rows)
    for objective, reference, budget, x, low, high in rows:
        assert low <= x <= high, (objective, reference, budget)
    by = {(r[0], r[1], r[2]): r[3] for r in rows}
    assert by[("strong", "weak", 250)] == math.inf  # weak never gets as good as strong at 250
    assert by[("weak", "strong", 10)] == 10.0  # strong matches weak with the fewest labels
    assert 10 < by[("weak", "strong", 250)] < 250
    aubc = {r[0]: r for r in eff.aubc_rows()}
    assert set(aubc) == {"strong", "weak", "flat"} and all(r[1] == "linear" for r in aubc.values())
    assert aubc["strong"][2] > aubc["weak"][2]
    assert aubc["strong"][3] <= aubc["strong"][2] <= aubc["strong"][4]
    comparisons = eff.aubc_comparison_rows()
    assert [(r[1], r[2]) for r in comparisons] == [("strong", "weak"), ("strong", "flat"), ("weak", "flat")]
    assert all(r[8] >= r[6] for r in comparisons)  # p_holm >= p


def test_without_bootstrap_efficiency_has_estimates_but_no_intervals():
    eff = Efficiency(fake_summariser(protocols=("linear",), n_boot=0))
    rows = eff.efficiency_rows()
    assert rows and all(r[4] == r[5] == "" and r[3] != "" for r in rows)
    assert all(r[3] == r[4] == "" for r in eff.aubc_rows()) and eff.aubc_comparison_rows() == []


def test_summary_has_auprc_and_comparisons_have_holm():
    s = fake_summariser()
    rows = s.summary_rows()
    assert len(rows[0]) == 12
    for row in rows:
        assert row[10] <= row[8] <= row[11]  # macro_auprc within its interval
    comparisons = s.comparison_rows()
    assert all(r[-1] >= r[7] for r in comparisons)
    linear = [r for r in comparisons if r[0] == "linear"]
    assert len(linear) == 9


# -- percentage budgets ------------------------------------------------------------------------------


def test_percentage_budgets_resolve_with_halves_up_and_a_minimum_of_two():
    assert resolve_budget("50%", 5) == 3  # 2.5 -> 3
    assert resolve_budget("10%", 274) == 27  # 27.4
    assert resolve_budget("0.1%", 100) == 2  # 0.1 -> 0, raised to the minimum
    assert resolve_budget("2.5%", 1000) == 25  # exact decimal arithmetic
    assert resolve_budget("100%", 7) == 7
    assert canonical_percent(" 02.50 %") == "2.5%"
    counts, record = resolve_budgets([10, "1%", "2%"], 1000)
    assert counts == (10, 20) and record == {"1%": 10, "2%": 20}  # "1%" and 10 are one budget


@pytest.mark.parametrize(
    "budgets, message",
    [
        (["2%", "2.0%"], "each budget may appear once"),
        (["0%"], "above 0% and at most 100%"),
        (["150%"], "above 0% and at most 100%"),
        (["ten"], "neither a whole number of images nor a percentage"),
        ([2.5], "neither a whole number of images nor a percentage"),
    ],
)
def test_bad_percentage_budgets_are_config_errors(budgets, message):
    with pytest.raises(ConfigError, match=message):
        recipe_from_dict(
            {"name": "x", "objectives": [{"name": "random"}], "evaluation": {"budgets": budgets}}
        )


def test_a_recorded_resolution_must_still_hold():
    from radtex_bench.evaluation.data import resolve_pool_budgets

    def recipe(record):
        evaluation = {"budgets": ["2%", 50], "resolved_budgets": record}
        return recipe_from_dict({"name": "x", "objectives": [{"name": "random"}], "evaluation": evaluation})

    assert resolve_pool_budgets(recipe({"2%": 5}), 274) == ((5, 50), {"2%": 5})
    assert resolve_pool_budgets(recipe({"3%": 9}), 274) == ((5, 50), {"2%": 5})  # stale entries are ignored
    with pytest.raises(ConfigError, match=r"resolved_budgets.2%: records 6 images, but 2% of .* 274 .* is 5"):
        resolve_pool_budgets(recipe({"2%": 6}), 274)
    with pytest.raises(ConfigError, match="budget 50 is larger than the 40 labelled training images"):
        resolve_pool_budgets(recipe(None), 40)


def test_recipe_orders_counts_then_percentages():
    recipe = recipe_from_dict(
        {"name": "x", "objectives": [{"name": "random"}], "evaluation": {"budgets": ["10%", 50, "2%", 20]}}
    )
    assert recipe.evaluation.budgets == (20, 50, "2%", "10%")


# -- fixed subsets -----------------------------------------------------------------------------------


def pool_data():
    ids = [f"img{i}" for i in range(20)]
    table = SimpleNamespace(image_ids=ids)
    return SimpleNamespace(table=table, pool=np.arange(12), val=np.arange(12, 16), test=np.arange(16, 20))


def test_fixed_subsets_from_json_and_csv(tmp_path):
    data = pool_data()
    listing = {
        "0": {"4": ["img3", "img1", "img0", "img7"], "2": ["img1", "img3"]},
        "1": {"4": ["img2", "img4", "img5", "img6"], "2": ["img9", "img8"]},
    }
    (tmp_path / "subsets.json").write_text(json.dumps(listing))
    got = fixed_subsets(tmp_path / "subsets.json", data, (2, 4), 2)
    assert got[0][4].tolist() == [0, 1, 3, 7] and got[1][2].tolist() == [8, 9]
    with open(tmp_path / "s.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["seed", "budget", "image_id"])
        for seed, by_budget in listing.items():
            for budget, ids in by_budget.items():
                writer.writerows([seed, budget, i] for i in ids)
    from_csv = fixed_subsets(tmp_path / "s.csv", data, (4,), 1)
    assert list(from_csv) == [0] and list(from_csv[0]) == [4]
    assert from_csv[0][4].tolist() == got[0][4].tolist()


@pytest.mark.parametrize(
    "listing, budgets, seeds, error, message",
    [
        (
            {"0": {"2": ["img1", "img14"]}, "1": {"2": ["nope", "img99"]}},
            (2,),
            1,
            DataError,
            r"3 image id\(s\) .* not in the labelled training pool .*'img14', 'nope', 'img99'; 1 validation/test images; 2 not in the dataset",
        ),
        ({"0": {"3": ["img1", "img2"]}}, (3,), 1, DataError, "lists 2 images"),
        ({"0": {"2": ["img1", "img1"]}}, (2,), 1, DataError, "lists image 'img1' twice"),
        ({"0": {"2": ["img1", "img2"]}}, (2,), 3, ConfigError, r"evaluation.seeds: 3, but .* holds 1 seed"),
        (
            {"0": {"2": ["img1", "img2"]}},
            (2, 4),
            1,
            ConfigError,
            r"evaluation.budgets: budget\(s\) 4 are not in",
        ),
    ],
)
def test_fixed_subsets_are_validated(tmp_path, listing, budgets, seeds, error, message):
    path = tmp_path / "subsets.json"
    path.write_text(json.dumps(listing))
    with pytest.raises(error, match=message):
        fixed_subsets(path, pool_data(), budgets, seeds)


def test_fixed_subsets_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="evaluation.subsets_from: .* not found"):
        fixed_subsets(tmp_path / "missing.json", pool_data(), (2,), 1)
    (tmp_path / "bad.csv").write_text("seed,image\n0,img1\n")
    with pytest.raises(DataError, match="no column budget, image_id"):
        fixed_subsets(tmp_path / "bad.csv", pool_data(), (2,), 1)


# -- end to end: the acceptance recipe ---------------------------------------------------------------


@pytest.fixture(scope="module")
def acceptance_run(module_tmp):
    """random, supervised and captioning with budgets ["2%", 50, 200] on 400 synthetic images at 32 px."""
    import yaml

    from radtex_bench.cli import main
    from radtex_bench.data.synthetic import generate_synthetic

    base = module_tmp
    root = generate_synthetic(base / "data", n=400, size=32, seed=0)
    short = {"max_steps": 2, "batch_size": 16}
    recipe = {
        "name": "efficiency",
        "data": {
            "pretrain": {"kind": "manifest", "root": str(root)},
            "pathologies": ["Cardiomegaly", "Edema", "Pleural Effusion"],
        },
        "encoder": {"name": "resnet18", "image_size": 32},
        "objectives": [
            {"name": "random"},
            {"name": "supervised", "train": short},
            {
                "name": "captioning",
                "params": {"width": 32, "heads": 2, "vocab_size": 300, "min_frequency": 1},
                "train": short,
            },
        ],
        "evaluation": {"budgets": ["2%", 50, 200], "seeds": 2, "bootstrap": 50},
    }
    path = base / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = base / "run"
    assert main(["--quiet", "run", str(path), "--out", str(out)]) == 0
    return path, out, main


def read(path):
    return list(csv.DictReader(open(path)))


def test_acceptance_tables(acceptance_run):
    _, out, _ = acceptance_run
    pool = len(json.loads((out / "splits.json").read_text())["train"])
    two_percent = max(2, math.floor(0.02 * pool + 0.5))
    subsets = json.loads((out / "subsets.json").read_text())
    assert {b: len(ids) for b, ids in subsets["0"].items()} == {
        str(two_percent): two_percent,
        "50": 50,
        "200": 200,
    }
    import yaml

    evaluation = yaml.safe_load((out / "recipe.yaml").read_text())["evaluation"]
    assert evaluation["budgets"] == [50, 200, "2%"] and evaluation["resolved_budgets"] == {"2%": two_percent}

    efficiency = read(out / "efficiency.csv")
    assert list(efficiency[0]) == ["objective", "reference", "budget", "labels_to_match", "ci_low", "ci_high"]
    assert len(efficiency) == 6 * 3
    for r in efficiency:
        assert float(r["ci_low"]) <= float(r["labels_to_match"]) <= float(r["ci_high"]), r

    comparisons = read(out / "comparisons.csv")
    p = np.array([float(r["p_value"]) for r in comparisons])
    adjusted = np.array([float(r["p_holm"]) for r in comparisons])
    assert (adjusted >= p).all()
    order = np.argsort(p, kind="stable")
    assert (np.diff(adjusted[order]) >= 0).all()
    assert np.allclose(adjusted, holm_by_rejection(p), atol=1e-5)  # one family: the linear protocol

    summary = read(out / "summary.csv")
    for r in summary:
        assert float(r["auprc_ci_low"]) <= float(r["macro_auprc"]) <= float(r["auprc_ci_high"])
    results = read(out / "results.csv")
    assert list(results[0])[-2:] == ["auc", "auprc"]
    assert all((r["auc"] == "") == (r["auprc"] == "") for r in results)
    aubc = read(out / "aubc.csv")
    assert [r["objective"] for r in aubc] == ["random", "supervised", "captioning"]
    assert all(0.0 <= float(r["aubc"]) <= 1.0 for r in aubc)
    report = (out / "report.md").read_text()
    assert "## Label efficiency" in report and "with 50 labels ≈" in report
    assert f"{two_percent} labels (2%)" in report and "p (Holm)" in report


def test_subsets_from_reproduces_results_and_resume_keeps_the_recipe(acceptance_run, tmp_path):
    recipe, out, main = acceptance_run
    again = tmp_path / "again"
    args = [
        "--quiet",
        "run",
        str(recipe),
        "--out",
        str(again),
        "--set",
        f"evaluation.subsets_from={out / 'subsets.json'}",
    ]
    assert main(args) == 0
    assert (again / "results.csv").read_text() == (out / "results.csv").read_text()
    assert (again / "subsets.json").read_text() == (out / "subsets.json").read_text()
    # resuming with the run's own recipe.yaml (which records the resolution) changes nothing
    stored = (out / "recipe.yaml").read_text()
    assert main(["--quiet", "run", str(out / "recipe.yaml"), "--out", str(out), "--resume"]) == 0
    assert (out / "recipe.yaml").read_text() == stored


def test_subsets_from_with_unknown_ids_exits_2(acceptance_run, tmp_path, capsys):
    recipe, out, main = acceptance_run
    listing = json.loads((out / "subsets.json").read_text())
    test_ids = json.loads((out / "splits.json").read_text())["test"]
    budget = next(iter(listing["0"]))
    listing["0"][budget][:2] = ["not-an-image", test_ids[0]]
    bad = tmp_path / "subsets.json"
    bad.write_text(json.dumps(listing))
    code = main(
        [
            "--quiet",
            "run",
            str(recipe),
            "--out",
            str(tmp_path / "o"),
            "--set",
            f"evaluation.subsets_from={bad}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "2 image id(s)" in err and "not-an-image" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "results.csv").exists()
