"""Faults real users hit (issue 11), each as a test whose assertion is the right value.

Recipes that a validation check refuses (one-image batches, temperatures, missing classes, overlap with
``data.overlap: error``) live in the bad-input corpus (tests/bad_inputs/); this file holds the ones
that must *work*, and the right values they must give.
"""

from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pytest
import torch
import yaml
from conftest import write_manifest, write_tiny_recipe

from radtex_bench.cli import main
from radtex_bench.config import load_recipe, recipe_from_dict
from radtex_bench.data.kinds import DatasetSpec
from radtex_bench.data.loading import load_table
from radtex_bench.data.overlap import Overlap, comparable_ids, find_overlap
from radtex_bench.encoders import build_encoder
from radtex_bench.objectives import OBJECTIVES, SetupContext


def _blank_split(root):
    rows = list(csv.reader(open(root / "manifest.csv")))
    return rows


# -- (1) pretraining never sees the evaluation validation/test images -------------------------------


def test_overlapping_evaluation_images_are_left_out_of_pretraining(tmp_path, manifest_dir):
    """Case 11: pretrain and evaluate on the same manifest, the evaluation split asking for more test."""
    recipe = write_tiny_recipe(
        tmp_path / "r.yaml",
        manifest_dir,
        [{"name": "supervised", "train": {"epochs": 1, "max_steps": 1, "batch_size": 4}}],
        {"budgets": [4], "seeds": 1, "bootstrap": 10},
        "overlap",
    )
    raw = yaml.safe_load(recipe.read_text())
    raw["data"]["evaluate"] = {
        "kind": "manifest",
        "root": str(manifest_dir),
        "split_fractions": [0.5, 0.1, 0.4],
    }
    recipe.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    assert main(["--quiet", "run", str(recipe), "--out", str(out)]) == 0

    used = list(csv.DictReader(open(out / "pretrain" / "images.csv")))
    splits = json.loads((out / "splits.json").read_text())
    held_out = set(splits["val"]) | set(splits["test"])
    assert used and not {row["image_id"] for row in used} & held_out  # no evaluation image was pretrained on
    # ... nor any image of an evaluation patient
    table = load_table(DatasetSpec.from_plain({"kind": "manifest", "root": str(manifest_dir)}, "d"))
    patient = dict(zip(table.image_ids, table.patient_ids))
    assert not {patient[r["image_id"]] for r in used} & {patient[i] for i in held_out}
    assert all(r["path"].startswith("/") for r in used)  # resolved absolute paths, auditable alone

    overlap = json.loads((out / "pretrain" / "overlap.json").read_text())
    assert overlap["shared_images"] > 0 and overlap["excluded_images"] >= overlap["shared_images"]
    assert "left out of pretraining" in (out / "run.log").read_text()
    report = (out / "report.md").read_text()
    assert "## Evaluation images left out of pretraining" in report
    assert f"{overlap['excluded_images']} image(s) were left out" in report


def _copied_manifest_recipe(tmp_path, **data):
    """Pretrain on a manifest, evaluate on a copy of it at another root (real files, not links)."""
    write_manifest(tmp_path / "data", n=40)
    shutil.copytree(tmp_path / "data", tmp_path / "data_copy")
    recipe = write_tiny_recipe(
        tmp_path / "r.yaml",
        tmp_path / "data",
        [{"name": "supervised", "train": {"epochs": 1, "max_steps": 1, "batch_size": 4}}],
        {"budgets": [4], "seeds": 1, "bootstrap": 0},
        "copied",
    )
    raw = yaml.safe_load(recipe.read_text())
    # A bigger test share than pretraining's own patient split, as in case 11: the splits disagree.
    raw["data"]["evaluate"] = {
        "kind": "manifest",
        "root": str(tmp_path / "data_copy"),
        "split_fractions": [0.5, 0.1, 0.4],
    }
    raw["data"].update(data)
    recipe.write_text(yaml.safe_dump(raw))
    return recipe


def test_copied_manifest_at_another_root_is_matched_by_image_id_and_patient(tmp_path):
    """Case 11 with data.evaluate.root = a copy of the data folder: the paths differ, the ids do not, so
    the evaluation val/test images and their patients are still left out of pretraining."""
    recipe = _copied_manifest_recipe(tmp_path)
    out = tmp_path / "run"
    assert main(["--quiet", "run", str(recipe), "--out", str(out)]) == 0

    # The right value, from the data alone: the pretraining split minus every evaluation val/test patient.
    table = load_table(DatasetSpec.from_plain({"kind": "manifest", "root": str(tmp_path / "data")}, "d"))
    patient = dict(zip(table.image_ids, table.patient_ids))
    splits = json.loads((out / "splits.json").read_text())
    held = set(splits["val"]) | set(splits["test"])
    held_patients = {patient[i] for i in held}
    train = table.take(table.split_rows("train"))
    expected = {i for i, p in zip(train.image_ids, train.patient_ids) if p not in held_patients}
    shared = set(train.image_ids) & held
    assert shared  # the copy's own patient split puts some pretraining images in its val/test

    used = list(csv.DictReader(open(out / "pretrain" / "images.csv")))
    assert {r["image_id"] for r in used} == expected
    assert all(r["path"].startswith(str((tmp_path / "data").resolve())) for r in used)
    overlap = json.loads((out / "pretrain" / "overlap.json").read_text())
    assert overlap["shared_images"] == len(shared)
    assert overlap["shared_patients"] == len({patient[i] for i in train.image_ids} & held_patients)
    assert overlap["excluded_images"] == len(train) - len(expected)
    assert "image id, patient id and resolved file path" in overlap["matched_by"]
    log = (out / "run.log").read_text()
    assert "left out of pretraining" in log and "taken to use one naming scheme" in log  # visible caveat
    report = (out / "report.md").read_text()
    assert f"{overlap['excluded_images']} image(s) were left out" in report
    assert "taken to use one naming scheme" in report


def test_copied_manifest_overlap_error_exits_2(tmp_path, capsys):
    recipe = _copied_manifest_recipe(tmp_path, overlap="error")
    out = tmp_path / "run"
    assert main(["--quiet", "run", str(recipe), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: data.pretrain / data.evaluate: ")
    assert "evaluation validation/test images" in err[0] and "data.overlap: exclude" in err[0]
    assert not (out / "pretrain" / "images.csv").exists() and not (out / "report.md").exists()


def test_overlap_by_path_across_dataset_kinds(tmp_path):
    """Another kind listing the same files under other ids: matched by resolved path, and every
    pretraining image of a patient with a shared file goes too."""
    write_manifest(tmp_path / "a", n=20)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "images").symlink_to(tmp_path / "a" / "images")  # same files, other dataset root
    rows = list(csv.reader(open(tmp_path / "a" / "manifest.csv")))
    with open(tmp_path / "b" / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows([rows[0]] + [[r[0], "other-" + r[1], *r[2:]] for r in rows[1:]])
    a = load_table(DatasetSpec.from_plain({"kind": "manifest", "root": str(tmp_path / "a")}, "a"))
    b = load_table(DatasetSpec.from_plain({"kind": "manifest", "root": str(tmp_path / "b")}, "b"))
    b.kind = "nih"  # another kind: its ids live in another namespace
    assert comparable_ids(a, b) is None
    overlap = find_overlap(a, b, np.array([0, 5, 7]))  # patients p0, p2, p3 (2 images each)
    assert overlap.images == 3 and overlap.patients == 3 and "resolved file path" in overlap.by
    assert set(np.flatnonzero(overlap.drop)) == {0, 1, 4, 5, 6, 7}


def test_overlap_sentence_says_the_left_out_count_only_when_patients_add_images():
    """It said `59 pretraining image(s) ...; 59 pretraining image(s) affected`: the count twice."""
    by = "image id and patient id (same dataset)"
    only_shared = Overlap(drop=np.array([1, 1, 0, 0], bool), images=2, patients=2, by=by, examples=["x.png"])
    assert only_shared.describe() == (
        "2 pretraining image(s) are evaluation validation/test images and 2 patient(s) appear on both "
        "sides, matched by image id and patient id (same dataset) (e.g. x.png)"
    )
    with_patients = Overlap(drop=np.array([1, 1, 1, 0], bool), images=2, patients=1, by=by, note="n")
    assert with_patients.describe() == (
        "2 pretraining image(s) are evaluation validation/test images and 1 patient(s) appear on both "
        "sides, matched by image id and patient id (same dataset); with the rest of those patients' "
        "images, 3 pretraining image(s) in all (note: n)"
    )


@pytest.mark.parametrize(
    ("kind", "gen_a", "gen_b", "compared"),
    [
        ("manifest", None, None, True),  # a copied manifest; the finding carries MANIFEST_NOTE
        ("chexpert", None, None, True),  # CheXpert-v1.0-small vs CheXpert-v1.0: ids are the same paths
        ("synthetic", 0, 0, True),  # same generator seed: P00000_S01 is the same image at any root
        ("synthetic", 0, 1, False),  # another seed reuses the ids for other images
    ],
)
def test_same_kind_at_another_root_compares_ids(tmp_path, kind, gen_a, gen_b, compared):
    from radtex_bench.data.synthetic import generator_params

    tables = []
    for name, seed in (("a", gen_a), ("b", gen_b)):
        write_manifest(tmp_path / name, n=8)
        if seed is not None:
            (tmp_path / name / "synthetic.json").write_text(json.dumps(generator_params(8, 32, seed)))
        table = load_table(DatasetSpec.from_plain({"kind": "manifest", "root": str(tmp_path / name)}, name))
        table.kind = kind
        tables.append(table)
    a, b = tables
    assert (comparable_ids(a, b) is not None) == compared
    overlap = find_overlap(a, b, np.array([2]))  # image images/2.png of patient p1, not the same file
    assert overlap.images == int(compared) and overlap.patients == int(compared)
    assert bool(overlap.note) == (compared and kind == "manifest")


def test_default_evaluation_has_no_overlap(tmp_path, manifest_dir):
    table = load_table(DatasetSpec.from_plain({"kind": "manifest", "root": str(manifest_dir)}, "d"))
    train = table.take(table.split_rows("train"))
    held = np.concatenate([table.split_rows("validate"), table.split_rows("test")])
    assert not find_overlap(train, table, held).found


# -- (3) a metric the data cannot define is never averaged away silently -----------------------------


def test_cells_a_subset_cannot_score_are_listed_in_the_report(tmp_path, manifest_dir):
    recipe = write_tiny_recipe(
        tmp_path / "r.yaml",
        manifest_dir,
        [{"name": "random"}],
        {"budgets": [2], "seeds": 2, "bootstrap": 0},
        "gaps",
    )
    out = tmp_path / "run"
    assert main(["--quiet", "run", str(recipe), "--out", str(out)]) == 0
    results = list(csv.DictReader(open(out / "results.csv")))
    gaps = {(r["pathology"], r["seed"]) for r in results if r["auc"] == ""}
    assert gaps  # two images cannot hold both classes of both pathologies in every seed
    report = (out / "report.md").read_text()
    assert "## Pathologies a labelled subset could not score" in report
    for pathology, _seed in gaps:
        assert f"| random | linear | 2 | {pathology} |" in report


# -- (5) the CLIP temperature stays learnable at its cap ---------------------------------------------


def _clip(tmp_path, name: str = "clip", **params):
    cls = OBJECTIVES.get(name)
    torch.manual_seed(0)
    sizes = {"embed_dim": 8, "width": 16, "heads": 2, **({} if name == "coca" else {"layers": 1})}
    objective = cls(build_encoder("resnet18"), **{**sizes, **params})
    reports = [f"finding {i} in the left lung" for i in range(8)]
    objective.setup(
        SetupContext(
            reports=reports,
            labels=np.zeros((8, 1), np.float32),
            pathologies=["A"],
            out_dir=tmp_path,
            image_size=32,
            seed=0,
        )
    )
    return objective, reports


def test_clip_temperature_has_a_gradient_above_its_cap_and_is_clamped_after_the_step(tmp_path):
    objective, reports = _clip(tmp_path, max_logit_scale=100.0)
    with torch.no_grad():
        objective.logit_scale.fill_(math.log(150.0))  # training pushed it past the cap
    out = objective({"image": torch.randn(8, 3, 32, 32), "report": reports})
    out["loss"].backward()
    assert objective.logit_scale.grad is not None and objective.logit_scale.grad.abs().item() > 0
    objective.after_step(1, 10)
    assert objective.logit_scale.item() == pytest.approx(math.log(100.0))


def _capped_objectives() -> list[str]:
    """Every built-in objective with a learnable logit scale and a ``max_logit_scale`` cap."""
    import inspect

    return sorted(
        name
        for name in OBJECTIVES.names()
        if "max_logit_scale" in inspect.signature(OBJECTIVES.get(name).__init__).parameters
    )


def test_every_capped_logit_scale_is_found():
    assert {"clip", "coca", "siglip"} <= set(_capped_objectives())


@pytest.mark.parametrize("name", _capped_objectives())
def test_every_objective_with_max_logit_scale_clamps_it_after_the_step(tmp_path, name):
    """The whole kind of case 17: a cap that is declared must hold after every optimiser step."""
    objective, _ = _clip(tmp_path, name, max_logit_scale=50.0)
    with torch.no_grad():
        objective.logit_scale.fill_(math.log(80.0))
    objective.after_step(1, 10)
    assert objective.logit_scale.item() == pytest.approx(math.log(50.0))


def test_clip_temperature_learns_during_training(tmp_path, manifest_dir):
    """At the cap from the start, the temperature still moves (it was frozen at 0.01 before)."""
    clip = {
        "name": "clip",
        "params": {
            "embed_dim": 8,
            "width": 16,
            "layers": 1,
            "heads": 2,
            "vocab_size": 300,
            "init_temperature": 0.0101,
        },
        "train": {"epochs": 1, "max_steps": 6, "batch_size": 8, "lr": 0.05, "log_every": 1},
    }
    recipe = write_tiny_recipe(
        tmp_path / "r.yaml", manifest_dir, [clip], {"budgets": [4], "seeds": 1, "bootstrap": 0}, "t"
    )
    out = tmp_path / "run"
    assert main(["--quiet", "run", str(recipe), "--out", str(out)]) == 0
    temps = [json.loads(line)["temperature"] for line in open(out / "pretrain" / "clip" / "metrics.jsonl")]
    assert len(set(temps)) > 1 and min(temps) >= 0.01 - 1e-6  # it moves, and never beyond the cap


# -- (7) YAML 1.1 scientific notation -----------------------------------------------------------------


def test_scientific_notation_is_a_number(tmp_path):
    """Case 21: `lr: 3e-4` (no dot) is a string to PyYAML; it is read as the float it is."""
    path = tmp_path / "r.yaml"
    path.write_text(
        "name: sci\nobjectives:\n  - name: supervised\n    train: {lr: 3e-4, weight_decay: 1e-4}\n"
        "  - name: clip\n    params: {init_temperature: 7E-2}\n"
    )
    recipe = load_recipe(path)
    assert recipe.objectives[0].train.lr == 0.0003 and recipe.objectives[0].train.weight_decay == 0.0001
    assert recipe.objectives[1].params["init_temperature"] == 0.07
    assert load_recipe(path, ["objectives.0.train.lr=1e-3"]).objectives[0].train.lr == 0.001
    from radtex_bench.config import dump_recipe

    assert "lr: 0.0003" in dump_recipe(recipe)
    # still a string where a string is meant, and still refused where it is not a number
    assert recipe_from_dict({"name": "1e3", "objectives": [{"name": "random"}]}).name == "1e3"
    with pytest.raises(Exception, match="expected a number, got 'fast'"):
        load_recipe(path, ["objectives.0.train.lr=fast"])
    with pytest.raises(Exception, match="expected a finite number"):
        load_recipe(path, ["objectives.0.train.lr=.inf"])


# -- (4) small batches never crash BatchNorm ----------------------------------------------------------


def test_smallest_allowed_batches_run(tmp_path, manifest_dir):
    """batch_size 2 for pretraining (simclr's BatchNorm1d head), budget 2 and fine-tuning batch 2, at 32 px
    where resnet18's last feature map is 1x1."""
    simclr = {
        "name": "simclr",
        "params": {"hidden_dim": 16, "projection_dim": 8},
        "train": {"max_steps": 2, "batch_size": 2},
    }
    evaluation = {
        "budgets": [2, 3],
        "seeds": 1,
        "bootstrap": 0,
        "protocols": ["finetune"],
        "finetune": {"batch_size": 2, "epochs": 1, "min_steps": 1, "patience": 1},
    }
    recipe = write_tiny_recipe(tmp_path / "r.yaml", manifest_dir, [simclr], evaluation, "small")
    assert main(["--quiet", "run", str(recipe), "--out", str(tmp_path / "run")]) == 0


def test_a_validation_split_without_a_class_is_shown_in_the_report(tmp_path):
    """The test metric stays defined, but what validation chooses cannot be chosen: said, not hidden."""
    root = tmp_path / "ds"
    write_manifest(root, n=60, splits=True)
    rows = list(csv.reader(open(root / "manifest.csv")))
    split, edema = rows[0].index("split"), rows[0].index("Edema")
    for row in rows[1:]:
        if row[split] == "validate":
            row[edema] = "0"  # no validation positive for Edema
    with open(root / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    recipe = write_tiny_recipe(
        tmp_path / "r.yaml",
        root,
        [{"name": "random"}],
        {"budgets": [8], "seeds": 1, "bootstrap": 0},
        "valgap",
    )
    out = tmp_path / "run"
    assert main(["--quiet", "run", str(recipe), "--out", str(out)]) == 0
    caveats = json.loads((out / "caveats.json").read_text())
    assert len(caveats) == 1 and "no positive 'Edema' image in the validation split" in caveats[0]
    assert "## Caveats" in (out / "report.md").read_text()
    assert "no positive 'Edema' image in the validation split" in (out / "run.log").read_text()


def test_a_folder_written_before_a_key_existed_still_resumes(tmp_path, manifest_dir):
    """recipe.yaml of an older version lacks keys added since (with their defaults): resuming fills them
    in rather than calling it another recipe; a real difference is still refused."""
    recipe = write_tiny_recipe(
        tmp_path / "r.yaml",
        manifest_dir,
        [{"name": "random"}],
        {"budgets": [4], "seeds": 1, "bootstrap": 0},
        "old",
    )
    out = tmp_path / "run"
    assert main(["--quiet", "run", str(recipe), "--out", str(out)]) == 0
    stored = yaml.safe_load((out / "recipe.yaml").read_text())
    del stored["data"]["overlap"], stored["data"]["pretrain"]["views"]  # as an older version wrote it
    (out / "recipe.yaml").write_text(yaml.safe_dump(stored, sort_keys=False))
    assert main(["--quiet", "run", str(recipe), "--out", str(out), "--resume"]) == 0
    assert main(["--quiet", "run", str(recipe), "--out", str(out), "--resume", "--set", "seed=3"]) == 2


# -- values inside their ranges that still make training diverge: one error line, not a traceback -----


def test_fine_tuning_that_diverges_is_one_error_line_naming_its_settings(tmp_path, manifest_dir, capsys):
    evaluation = {
        "budgets": [8],
        "seeds": 1,
        "bootstrap": 10,
        "protocols": ["finetune"],
        "finetune": {"lr": 10, "weight_decay": 10, "epochs": 2, "min_steps": 5},
    }
    recipe = write_tiny_recipe(tmp_path / "r.yaml", manifest_dir, [{"name": "random"}], evaluation, "div")
    assert main(["--quiet", "run", str(recipe), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: evaluation.finetune: fine-tuning 'random' diverged in epoch 1 of budget 8")
    assert "lower evaluation.finetune.lr (now 10.0)" in err and "Traceback" not in err and "\n" not in err
    assert not (tmp_path / "out" / "summary.csv").exists()


def test_an_encoder_with_non_finite_features_is_one_error_line_and_is_not_cached(
    tmp_path, manifest_dir, capsys, monkeypatch
):
    """A pretraining whose loss stayed finite can still leave NaN weights (AdamW's decay at lr 10 and
    weight_decay 10): the probe must not meet them as an sklearn traceback."""
    from radtex_bench.evaluation import evaluator

    real = evaluator.extract_features

    def diverged(*args, **kwargs):
        features = real(*args, **kwargs)
        features[3] = np.nan
        return features

    monkeypatch.setattr(evaluator, "extract_features", diverged)
    evaluation = {"budgets": [4], "seeds": 1, "bootstrap": 10}
    recipe = write_tiny_recipe(tmp_path / "r.yaml", manifest_dir, [{"name": "random"}], evaluation, "nan")
    out = tmp_path / "out"
    assert main(["--quiet", "run", str(recipe), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "error: objective 'random': its encoder gives non-finite (NaN/inf) features for 1 of"
    )
    assert "lower its train.lr or train.weight_decay" in err and "\n" not in err
    assert not (out / "features" / "random.npz").exists() and not (out / "summary.csv").exists()
