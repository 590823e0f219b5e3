"""The text-side protocols (zeroshot, retrieval, generation): their statistics, tables and a whole run."""

from __future__ import annotations

import csv
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import write_manifest, write_tiny_recipe

from radtex_bench.cli import main
from radtex_bench.evaluation.protocols.retrieval import pessimistic_ranks, retrieval_pools
from radtex_bench.evaluation.text_tables import (
    BootstrapSettings,
    chance_recall,
    clinical_efficacy,
    retrieval_rows,
    weighted_median,
)

# -- zero-shot ---------------------------------------------------------------------------------------


def test_zeroshot_scores_are_mean_positive_minus_mean_negative_prompt_scores():
    """CheXzero's rule: sigmoid(mean s(x, P+) - mean s(x, P-)); the cell keeps the log-odds. A prompt
    two pathologies share is scored once and read by both."""
    from radtex_bench.evaluation.prompts import PromptSet
    from radtex_bench.evaluation.protocols.zeroshot import log_odds, prompt_columns

    prompts = {
        "Edema": PromptSet(positive=("edema", "pulmonary edema"), negative=("no acute process",)),
        "Cardiomegaly": PromptSet(positive=("cardiomegaly",), negative=("no acute process", "normal heart")),
    }
    texts, columns = prompt_columns(prompts, ["Edema", "Cardiomegaly"])
    assert texts == ["edema", "pulmonary edema", "no acute process", "cardiomegaly", "normal heart"]
    table = {
        "edema": 2.0,
        "pulmonary edema": 4.0,
        "no acute process": 1.0,
        "cardiomegaly": 0.5,
        "normal heart": 3.0,
    }
    similarity = np.array([[table[t] * (i + 1) for t in texts] for i in range(3)])  # [3 images, 5 prompts]
    got = log_odds(similarity, columns)
    for i in range(3):
        assert got[i, 0] == pytest.approx((i + 1) * ((2.0 + 4.0) / 2 - 1.0))
        assert got[i, 1] == pytest.approx((i + 1) * (0.5 - (1.0 + 3.0) / 2))


# -- retrieval ---------------------------------------------------------------------------------------


def test_ranks_count_ties_against_the_model():
    scores = np.array([[0.9, 0.5, 0.1], [0.3, 0.3, 0.3], [0.2, 0.8, 0.7]])
    correct = np.eye(3, dtype=bool)
    assert pessimistic_ranks(scores, correct).tolist() == [1, 3, 2]  # a constant row ranks last
    # With two identical reports either one is correct: the best correct candidate counts.
    correct = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=bool)
    assert pessimistic_ranks(scores, correct).tolist() == [1, 2, 2]


def test_pools_are_bounded_deterministic_and_a_partition():
    pools = retrieval_pools(25, 10, seed=3)
    assert [len(p) for p in pools] == [9, 8, 8]
    assert sorted(np.concatenate(pools).tolist()) == list(range(25))
    again = retrieval_pools(25, 10, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(pools, again))
    assert not all(np.array_equal(a, b) for a, b in zip(pools, retrieval_pools(25, 10, seed=4)))
    assert retrieval_pools(0, 10, 0) == [] and len(retrieval_pools(10, 10, 0)) == 1


def test_weighted_median_is_the_median_of_the_resampled_list():
    rng = np.random.default_rng(0)
    values = rng.integers(1, 50, size=17).astype(float)
    weights = rng.integers(0, 3, size=(40, 17))
    weights[0] = 0  # an empty replicate
    got = weighted_median(values, weights)
    assert np.isnan(got[0])
    for w, m in zip(weights[1:], got[1:]):
        assert m == np.median(np.repeat(values, w))


def test_chance_recall_matches_a_random_ranking():
    rng = np.random.default_rng(0)
    m, c, k = 12, 3, 2
    hits = [(rng.permutation(m)[:k] < c).any() for _ in range(20000)]
    assert chance_recall(np.array([m]), np.array([c]), k) == pytest.approx(np.mean(hits), abs=0.01)
    assert chance_recall(np.array([12]), np.array([1]), 1) == pytest.approx(1 / 12)
    assert chance_recall(np.array([5]), np.array([1]), 10) == 1.0


def test_retrieval_rows_bootstrap_and_observed_agree():
    from radtex_bench.evaluation.protocols import Cell

    ranks = np.array([1, 3, 0, 12, 2, 7])  # 0: an image without a report is not a query
    cell = Cell(
        "m",
        "retrieval",
        0,
        0,
        np.zeros(0),
        np.zeros((6, 0)),
        {
            "image_to_report_rank": ranks,
            "report_to_image_rank": ranks,
            "pool": np.zeros(6, int),
            "n_correct": np.ones(6, int),
        },
    )
    settings = BootstrapSettings(3, 0.95, 0)
    weights = np.ones((3, 6), dtype=np.int32)
    rows = {(r[1], r[2]): r[3:] for r in retrieval_rows([cell], weights, settings, ["m"])}
    assert rows[("image_to_report", "R@1")] == (0.2, 0.2, 0.2)
    assert rows[("image_to_report", "R@5")] == (0.6, 0.6, 0.6)
    assert rows[("report_to_image", "median_rank")] == (3.0, 3.0, 3.0)


# -- clinical efficacy -------------------------------------------------------------------------------


def test_clinical_efficacy_by_hand():
    # Three pathologies over four reports; the third has no positive reference: undefined.
    ref = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]])
    gen = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 0], [0, -1, 0]])  # -1 (uncertain) is not positive
    scores = {k: v[0] for k, v in clinical_efficacy(gen, ref, np.ones((1, 4)), ["A", "B", "C"]).items()}
    # A: TP 1, FP 1, FN 1; B: TP 1, FP 0, FN 1; C: FP 1, no reference positive.
    assert scores["ce_f1/A"] == pytest.approx(0.5) and scores["ce_precision/A"] == pytest.approx(0.5)
    assert scores["ce_f1/B"] == pytest.approx(2 / 3) and scores["ce_recall/B"] == pytest.approx(0.5)
    assert math.isnan(scores["ce_f1/C"]) and math.isnan(scores["ce_precision/C"])
    assert scores["ce_f1"] == pytest.approx((0.5 + 2 / 3) / 2)  # averages the defined ones
    assert scores["ce_f1_micro"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 2))  # C's false positive counts
    # Nothing generated positive while references are: precision 0, not undefined.
    none = clinical_efficacy(np.zeros((4, 3)), ref, np.ones((1, 4)), ["A", "B", "C"])
    assert none["ce_precision/A"][0] == 0.0 and none["ce_f1"][0] == 0.0
    # A replicate is the statistic of the resampled list: weight 2 = the report counted twice.
    w = np.array([[2, 1, 0, 1]])
    twice = clinical_efficacy(
        np.repeat(gen, [2, 1, 0, 1], axis=0),
        np.repeat(ref, [2, 1, 0, 1], axis=0),
        np.ones((1, 4)),
        ["A", "B", "C"],
    )
    weighted = clinical_efficacy(gen, ref, w, ["A", "B", "C"])
    for name in twice:
        np.testing.assert_allclose(weighted[name], twice[name], equal_nan=True)


# -- a whole run -------------------------------------------------------------------------------------

TINY = {"width": 32, "heads": 2, "vocab_size": 300, "min_frequency": 1}
TRAIN = {"max_steps": 2, "batch_size": 8}


def text_recipe(tmp_path, root, **evaluation):
    objectives = [
        {"name": "captioning", "params": {**TINY, "bidirectional": False}, "train": TRAIN},
        {"name": "clip", "params": {**TINY, "embed_dim": 16, "layers": 1}, "train": TRAIN},
        {"name": "random"},
    ]
    evaluation = {
        "budgets": [10],
        "seeds": 1,
        "bootstrap": 20,
        "protocols": ["linear", "zeroshot", "retrieval", "generation"],
        "retrieval": {"max_candidates": 16},
        "generation": {"max_tokens": 12, "beam_size": 2},
        **evaluation,
    }
    recipe = write_tiny_recipe(tmp_path / "text.yaml", root, objectives, evaluation, "text")
    # The synthetic set's small validation split has positives of these (none of Cardiomegaly).
    raw = yaml.safe_load(recipe.read_text())
    raw["data"]["pathologies"] = ["Lung Opacity", "Pleural Effusion", "Edema"]
    recipe.write_text(yaml.safe_dump(raw))
    return recipe


def read(path):
    return pd.read_csv(path)


def test_all_four_protocols_end_to_end_and_resume(tmp_path, synthetic_dir, monkeypatch):
    recipe, out = text_recipe(tmp_path, synthetic_dir), tmp_path / "run"
    assert main(["--quiet", "run", str(recipe), "--out", str(out)]) == 0

    # The whole model is kept: heads of the text objectives, none for random.
    assert (out / "pretrain/captioning/heads.safetensors").exists()
    assert (out / "pretrain/clip/heads.safetensors").exists()
    assert not (out / "pretrain/random/heads.safetensors").exists()

    summary = read(out / "summary.csv")
    zero = summary[summary["protocol"] == "zeroshot"]
    assert sorted(zero["objective"]) == ["captioning", "clip"] and (zero["budget"] == 0).all()
    assert zero[["macro_auc", "ci_low", "ci_high"]].notna().all().all()
    assert set(read(out / "comparisons.csv")["protocol"]) >= {"zeroshot"}
    results = read(out / "results.csv")
    assert len(results[results["protocol"] == "zeroshot"]) == 2 * 3  # 2 objectives x 3 pathologies

    retrieval = read(out / "retrieval.csv")
    assert list(retrieval.columns) == ["objective", "direction", "metric", "value", "ci_low", "ci_high"]
    for label in ("clip", "captioning"):
        part = retrieval[retrieval["objective"] == label]
        assert set(zip(part["direction"], part["metric"])) == {
            (d, m)
            for d in ("image_to_report", "report_to_image")
            for m in ("R@1", "R@5", "R@10", "median_rank")
        }
    assert "random" not in set(retrieval["objective"])
    r = retrieval.set_index(["objective", "direction", "metric"])["value"]
    assert (r.xs("R@1", level="metric") <= r.xs("R@10", level="metric")).all()

    # paired: captioning - clip on every retrieval metric (one objective writes, so no generation pair)
    paired = read(out / "text_comparisons.csv")
    assert list(paired.columns) == [
        "protocol", "direction", "metric", "objective_a", "objective_b",
        "diff", "ci_low", "ci_high", "p_value", "n_boot", "p_holm",
    ]  # fmt: skip
    assert set(paired["protocol"]) == {"retrieval"} and len(paired) == 8
    assert (paired["objective_a"] == "captioning").all() and (paired["objective_b"] == "clip").all()
    for row in paired.itertuples():
        expected = r[("captioning", row.direction, row.metric)] - r[("clip", row.direction, row.metric)]
        assert row.diff == pytest.approx(expected, abs=2e-4)
        assert row.ci_low <= row.ci_high and row.p_value <= row.p_holm <= 1.0

    generation = read(out / "generation.csv")
    assert set(generation["objective"]) == {"captioning"}  # clip does not write
    metrics = set(generation["metric"])
    assert {
        "bleu_1",
        "bleu_4",
        "rouge_l",
        "cider",
        "ce_f1",
        "ce_precision",
        "ce_recall",
        "ce_f1_micro",
    } <= metrics
    assert {"ce_f1/Lung Opacity", "ce_f1/Pleural Effusion", "ce_f1/Edema"} <= metrics
    with open(out / "generations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) == {"objective", "image_id", "reference", "generated"}
    test_ids = set(__import__("json").loads((out / "splits.json").read_text())["test"])
    assert {row["image_id"] for row in rows} <= test_ids

    skips = read(out / "protocol_skips.csv")
    assert set(zip(skips["objective"], skips["protocol"])) == {
        ("clip", "generation"),
        ("random", "zeroshot"),
        ("random", "retrieval"),
        ("random", "generation"),
    }
    report = (out / "report.md").read_text()
    for heading in (
        "## Zero labels",
        "## Image–report retrieval",
        "## Report generation",
        "Example generations",
    ):
        assert heading in report
    assert "`random`: `zeroshot` skipped: the objective does not implement text_scores" in report

    # --resume: finished protocol cells are loaded, never recomputed, and the tables are identical.
    tables = {
        name: (out / name).read_bytes()
        for name in ("summary.csv", "retrieval.csv", "generation.csv", "generations.csv", "report.md")
    }
    import radtex_bench.engine.pretrain as pretrain_module
    from radtex_bench.evaluation.protocols import PROTOCOLS

    def fail(*args, **kwargs):
        raise AssertionError("a finished text cell was recomputed")

    monkeypatch.setattr(pretrain_module, "load_pretrained", fail)
    for name in ("zeroshot", "retrieval", "generation"):
        monkeypatch.setattr(PROTOCOLS.get(name), "run", fail)
    assert main(["--quiet", "run", str(recipe), "--out", str(out), "--resume"]) == 0
    for name, data in tables.items():
        assert (out / name).read_bytes() == data, name

    # New prompts recompute the zero-shot cells only; the heads deleted from a finished run are
    # recovered from last.ckpt, byte for byte, so nothing else is recomputed.
    monkeypatch.undo()
    heads = out / "pretrain/clip/heads.safetensors"
    heads_bytes = heads.read_bytes()
    heads.unlink()
    for name in ("retrieval", "generation"):
        monkeypatch.setattr(PROTOCOLS.get(name), "run", fail)
    cell = out / "eval/clip/zeroshot/b0_s0.npz"
    before = cell.read_bytes()
    prompts = "evaluation.prompts={Edema: {positive: [pulmonary edema], negative: [no pulmonary edema]}}"
    assert main(["--quiet", "run", str(recipe), "--out", str(out), "--resume", "--set", prompts]) == 0
    assert heads.read_bytes() == heads_bytes
    assert cell.read_bytes() != before
    assert (out / "retrieval.csv").read_bytes() == tables["retrieval.csv"]


@pytest.mark.parametrize("labelled", [True, False])
def test_plot_shows_zero_labels_left_of_the_log_axis(tmp_path, labelled):
    from radtex_bench.reporting.plots import auc_vs_budget

    rows = [
        ("clip", "zeroshot", 0, 0.7, 0.6, 0.8),
        ("captioning", "zeroshot", 0, 0.65, float("nan"), float("nan")),
    ]
    if labelled:
        rows += [("clip", "linear", b, 0.7 + b / 1000, 0.6, 0.9) for b in (10, 100)]
    summary = pd.DataFrame(
        rows, columns=["objective", "protocol", "budget", "macro_auc", "ci_low", "ci_high"]
    )
    path = tmp_path / "plot.png"
    auc_vs_budget(summary, path, ["captioning", "clip"])
    assert path.stat().st_size > 1000


def test_weighted_median_of_no_queries_is_nan_for_every_replicate():
    got = weighted_median(np.array([]), np.zeros((5, 0), dtype=np.int64))
    assert got.shape == (5,) and np.isnan(got).all()


@pytest.mark.parametrize("protocol", ["retrieval", "generation"])
def test_text_protocols_on_an_evaluation_set_without_reports_stop_before_any_work(tmp_path, capsys, protocol):
    """CheXpert and NIH have no reports: retrieval or generation would score nothing after pretraining."""
    write_manifest(tmp_path / "with_reports", n=40)
    write_manifest(tmp_path / "no_reports", n=100, seed=1, reports=False)
    recipe = write_tiny_recipe(
        tmp_path / "r.yaml",
        tmp_path / "with_reports",
        [{"name": "clip", "train": {"max_steps": 1, "batch_size": 4}}],
        {"budgets": [4], "seeds": 1, "protocols": ["linear", protocol]},
        "no_reports",
    )
    plain = yaml.safe_load(recipe.read_text())
    plain["data"]["evaluate"] = {"kind": "manifest", "root": str(tmp_path / "no_reports")}
    recipe.write_text(yaml.safe_dump(plain))
    out = tmp_path / "out"
    code = main(["--quiet", "run", str(recipe), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert (
        err[-1].startswith("error: evaluation.protocols:")
        and f"{protocol} needs test images with reports" in err[-1]
    )
    assert "data.evaluate" in err[-1]
    assert not (out / "pretrain" / "clip" / "encoder.safetensors").exists()


def test_report_says_when_every_generation_is_empty_or_identical(tmp_path):
    from radtex_bench.reporting.tables import read_table
    from radtex_bench.reporting.text_report import degenerate
    from radtex_bench.rundir import RunDir

    paths = RunDir(tmp_path)
    rows = [("empty", f"i{k}", "ref", "") for k in range(3)]
    rows += [("same", f"i{k}", "ref", "No acute findings.") for k in range(3)]
    rows += [("varied", f"i{k}", "ref", f"text {k}") for k in range(3)]
    with open(paths.generations, "w", newline="") as f:
        csv.writer(f).writerows([("objective", "image_id", "reference", "generated"), *rows])
    notes = degenerate(read_table(paths.generations, text=True), ["empty", "same", "varied"])
    assert len(notes) == 2
    assert notes[0].startswith("**empty wrote an empty report for every test image**")
    assert notes[1].startswith('**same wrote the same report for every test image** ("No acute findings.")')


PLAIN_WRITER = '''
import torch
from torch import nn

from radtex_bench.objectives import Objective, register_objective


@register_objective("plain_writer")
class PlainWriter(Objective):
    """SPEC section 5's text API as written: generate(images) -> list[str], no decoding options."""

    needs = {"image"}

    def __init__(self, encoder):
        super().__init__(encoder)
        self.head = nn.Linear(encoder.out_dim, 1)

    def forward(self, batch):
        return {"loss": self.head(self.encoder(batch["image"])).pow(2).mean()}

    @torch.no_grad()
    def generate(self, images):
        return ["FINDINGS: heart size is normal. IMPRESSION: no acute disease."] * images.shape[0]
'''


def test_a_plugin_generate_of_images_alone_is_scored_and_decoding_options_for_it_are_refused(
    tmp_path, monkeypatch, capsys, registries_restored
):
    (tmp_path / "plain_writer_plugin.py").write_text(PLAIN_WRITER)
    monkeypatch.syspath_prepend(str(tmp_path))
    write_manifest(tmp_path / "ds", n=40)
    train = {"max_steps": 1, "batch_size": 4}
    recipe = write_tiny_recipe(
        tmp_path / "r.yaml",
        tmp_path / "ds",
        [{"name": "plain_writer", "label": "writer", "train": train}],
        {"budgets": [4], "seeds": 1, "bootstrap": 10, "protocols": ["generation"]},
        "plain",
        plugins=["plain_writer_plugin"],
    )
    refused = tmp_path / "refused"
    argv = ["run", str(recipe), "--device", "cpu", "--out"]
    assert main([*argv, str(refused), "--set", "evaluation.generation.beam_size=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "error: --set evaluation.generation.beam_size=2: evaluation.generation.beam_size: objectives.0 "
        "(writer) writes with"
    )
    assert "generate(images), which takes no beam_size" in err and "\n" not in err
    assert not (refused / "pretrain").exists()  # refused before any work
    out = tmp_path / "run"
    assert main(["--quiet", *argv, str(out)]) == 0
    rows = pd.read_csv(out / "generation.csv")
    assert set(rows["objective"]) == {"writer"}
    assert {"bleu_4", "cider", "ce_f1"} <= set(rows["metric"])
    generations = pd.read_csv(out / "generations.csv")
    assert (generations["generated"] == "FINDINGS: heart size is normal. IMPRESSION: no acute disease.").all()
    # no AUROC protocol ran: no empty summary table, AUPRC section or AUROC plot
    report = (out / "report.md").read_text()
    assert "No protocol of this run scores AUROC" in report and "## Report generation" in report
    assert "## Summary" not in report and "## Macro AUPRC" not in report
    # the manifest's references ("nothing acute") are positive for nothing: CE F1 is undefined, and said so
    assert (rows.loc[rows["metric"].str.startswith("ce_"), "value"].isna()).all()
    assert "**Undefined CE F1** (no reference report of a scored test image is positive for it" in report
    assert "Cardiomegaly, Edema. `ce_f1`, `ce_precision` and `ce_recall` average the other 0" in report
    assert not (out / "plots" / "auc_vs_budget.png").exists()
