"""The evaluator: probes, missing classes, cell reuse, feature reuse, other evaluation datasets."""

import csv
import json

import numpy as np
import pytest
from conftest import write_tiny_recipe

from radtex_bench.cli import main
from radtex_bench.evaluation.protocols.knn import knn_scores
from radtex_bench.evaluation.protocols.linear import probe_pathology
from radtex_bench.evaluation.stats import auroc


def informative(n, rng, signal=2.0):
    y = (rng.random(n) < 0.4).astype(np.float32)
    x = rng.normal(size=(n, 16)).astype(np.float32)
    x[:, 0] += signal * y
    return x, y


def test_linear_probe_learns_and_uses_validation_only():
    rng = np.random.default_rng(0)
    (tx, ty), (vx, vy), (sx, sy) = informative(40, rng), informative(60, rng), informative(200, rng)
    scores, c = probe_pathology(tx, ty, vx, vy, sx)
    assert auroc(scores, sy) > 0.8
    # Test labels never enter: the same call gives the same scores whatever the test labels are.
    again, c2 = probe_pathology(tx, ty, vx, vy, sx)
    assert c == c2 and np.array_equal(scores, again)
    # The choice of C follows the validation labels.
    _, c_shuffled = probe_pathology(tx, ty, vx, rng.permutation(vy), sx)
    assert c_shuffled in (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


@pytest.mark.parametrize(
    "labels", [np.zeros(10), np.ones(10), np.full(10, np.nan), np.r_[np.ones(3), np.full(7, np.nan)]]
)
def test_one_class_subset_is_missing_not_half(labels):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 4))
    vx, vy = informative(30, rng)
    assert probe_pathology(x, labels.astype(np.float32), vx[:, :4], vy, x) == (None, None)
    assert knn_scores(x, labels.astype(np.float32), x, k=3) is None


def test_knn_votes_by_similarity():
    train = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = np.array([1.0, 1.0, 0.0, 0.0])
    scores = knn_scores(train, labels, np.array([[1.0, 0.05], [0.05, 1.0]]), k=3)
    assert scores[0] > 0.9 and scores[1] < 0.1


def write_recipe(tmp_path, root, **evaluation):
    objectives = [{"name": "random"}, {"name": "random", "label": "random-2"}]
    evaluation = {"budgets": [4, 8], "seeds": 2, "bootstrap": 20, **evaluation}
    return write_tiny_recipe(tmp_path / "ev.yaml", root, objectives, evaluation, "ev")


def test_resume_reuses_cells_and_features(tmp_path, manifest_dir, monkeypatch):
    recipe, out = write_recipe(tmp_path, manifest_dir), tmp_path / "run"
    assert main(["--quiet", "run", str(recipe), "--out", str(out)]) == 0
    features = out / "features" / "random.npz"
    cell = out / "eval" / "random" / "linear" / "b4_s0.npz"
    stamps = features.stat().st_mtime_ns, cell.stat().st_mtime_ns
    results = (out / "results.csv").read_text()

    import radtex_bench.evaluation.protocols.linear as linear_module

    def fail(*args, **kwargs):
        raise AssertionError("a finished cell was recomputed")

    monkeypatch.setattr(linear_module, "probe_pathology", fail)
    # More seeds on resume: old cells are reused, only the new seed's cells are computed.
    assert main(["--quiet", "run", str(recipe), "--out", str(out), "--resume"]) == 0
    assert (features.stat().st_mtime_ns, cell.stat().st_mtime_ns) == stamps
    assert (out / "results.csv").read_text() == results
    monkeypatch.undo()
    assert (
        main(["--quiet", "run", str(recipe), "--out", str(out), "--resume", "--set", "evaluation.seeds=3"])
        == 0
    )
    assert features.stat().st_mtime_ns == stamps[0]  # same weights: features reused
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert {r["seed"] for r in rows} == {"0", "1", "2"}


def test_missing_class_yields_blank_auc(tmp_path):
    from conftest import write_manifest

    root = tmp_path / "ds"
    write_manifest(root, n=60, pathologies=("Cardiomegaly", "Edema"), splits=True)
    rows = list(csv.reader(open(root / "manifest.csv")))
    split = rows[0].index("split")
    # No training image is Edema-positive: no subset can fit an Edema probe, whatever the budget.
    rows = [rows[0]] + [r[:-1] + ["0"] if r[split] == "train" else r for r in rows[1:]]
    with open(root / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    out = tmp_path / "run"
    assert main(["--quiet", "run", str(write_recipe(tmp_path, root)), "--out", str(out)]) == 0
    results = list(csv.DictReader(open(out / "results.csv")))
    assert {r["auc"] for r in results if r["pathology"] == "Edema"} == {""}  # missing, never 0.5
    assert all(r["auc"] != "" for r in results if r["pathology"] == "Cardiomegaly")
    summary = {(r["objective"], r["budget"]): r for r in csv.DictReader(open(out / "summary.csv"))}
    cardio = [
        float(r["auc"])
        for r in results
        if r["objective"] == "random" and r["budget"] == "8" and r["pathology"] == "Cardiomegaly"
    ]
    assert float(summary[("random", "8")]["macro_auc"]) == pytest.approx(np.mean(cardio), abs=1e-4)


def test_evaluate_on_another_dataset_with_its_own_pathologies(tmp_path):
    from conftest import write_manifest

    write_manifest(tmp_path / "a", n=40, pathologies=("Cardiomegaly", "Edema"))
    # 80 images: enough that validation holds both classes of each pathology (checked before any work)
    write_manifest(tmp_path / "b", n=80, seed=1, pathologies=("Pneumothorax", "Effusion"))
    recipe = write_recipe(tmp_path, tmp_path / "a", pathologies=["Pneumothorax", "Pleural Effusion"])
    out = tmp_path / "run"
    assert (
        main(
            [
                "--quiet",
                "run",
                str(recipe),
                "--out",
                str(out),
                "--set",
                f"data.evaluate={{kind: manifest, root: {tmp_path / 'b'}}}",
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert {r["pathology"] for r in rows} == {"Pneumothorax", "Pleural Effusion"}  # NIH spelling mapped
    splits = json.loads((out / "splits.json").read_text())
    b_ids = {r["image_path"] for r in csv.DictReader(open(tmp_path / "b" / "manifest.csv"))}
    assert set(splits["test"]) <= b_ids


def test_finetune_and_knn_protocols(tmp_path, manifest_dir):
    recipe = write_recipe(
        tmp_path,
        manifest_dir,
        protocols=["linear", "knn", "finetune"],
        finetune={"epochs": 1, "min_steps": 2, "batch_size": 4, "patience": 1},
    )
    out = tmp_path / "run"
    assert (
        main(["--quiet", "run", str(recipe), "--out", str(out), "--set", "objectives=[{name: random}]"]) == 0
    )
    summary = list(csv.DictReader(open(out / "summary.csv")))
    # Tables follow the recipe's protocol order, not the alphabet.
    assert list(dict.fromkeys(r["protocol"] for r in summary)) == ["linear", "knn", "finetune"]
    report = (out / "report.md").read_text()
    assert report.index("### linear, budget") < report.index("### knn, budget") < report.index("### finetune")
    assert (out / "plots" / "heatmap_finetune_b8.png").exists()


def test_an_edited_label_recomputes_the_cells_on_resume(tmp_path, manifest_dir):
    """Cells are keyed by the evaluation labels too: a probe fitted on old labels is never reused."""
    data = manifest_dir  # this test's own copy (tmp_path / "ds")
    recipe, out = write_recipe(tmp_path, data), tmp_path / "run"
    assert main(["--quiet", "run", str(recipe), "--out", str(out)]) == 0
    cell = out / "eval" / "random" / "linear" / "b4_s0.npz"
    stamp = cell.stat().st_mtime_ns
    subsets_before = (out / "subsets.json").read_text()
    # unchanged data: every cell reused
    assert main(["--quiet", "run", str(recipe), "--out", str(out), "--resume"]) == 0
    assert cell.stat().st_mtime_ns == stamp
    assert "cells computed" not in (out / "run.log").read_text().rsplit("resume=True", 1)[-1]
    # a validation label: the probe chooses its regularisation on it, and the subsets do not move
    chosen = json.loads((out / "splits.json").read_text())["val"][0]
    rows = list(csv.reader(open(data / "manifest.csv")))
    column = rows[0].index("Cardiomegaly")
    for row in rows[1:]:
        if row[0] == chosen:
            row[column] = {"1": "0"}.get(row[column], "1")  # flip it (a blank becomes positive)
    with open(data / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    assert main(["--quiet", "run", str(recipe), "--out", str(out), "--resume"]) == 0
    assert (out / "subsets.json").read_text() == subsets_before
    assert cell.stat().st_mtime_ns != stamp  # recomputed on the new labels
