"""One objective per job (``run --only``) and ``merge``: the merged folder is the one a single run of
all the objectives writes, byte for byte; folders that cannot be paired are refused naming why."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from conftest import TINY_CAPTIONING, write_manifest, write_tiny_recipe

from radtex_bench.cli import main

TRAIN = {"max_steps": 2, "batch_size": 8, "log_every": 1, "checkpoint_every": 1}
#: Every table and note a run writes; the merged folder must hold the same bytes.
TABLES = (
    "summary.csv",
    "comparisons.csv",
    "results.csv",
    "efficiency.csv",
    "aubc.csv",
    "aubc_comparisons.csv",
    "report.md",
    "recipe.yaml",
    "splits.json",
    "subsets.json",
    "pretrain/images.csv",
)


def run(*argv: str) -> int:
    return main(["--quiet", "run", *argv, "--device", "cpu"])


@pytest.fixture(scope="module")
def runs(module_tmp):
    """One run of both objectives, and one ``--only`` run of each, of the same recipe."""
    base = module_tmp
    write_manifest(base / "ds", n=60)
    objectives = [
        {"name": "captioning", "label": "cap", "params": TINY_CAPTIONING, "train": TRAIN},
        {"name": "random", "label": "rand"},
    ]
    evaluation = {"budgets": [4, 8], "seeds": 2, "bootstrap": 20}
    recipe = write_tiny_recipe(base / "r.yaml", base / "ds", objectives, evaluation, "pair")
    assert run(str(recipe), "--out", str(base / "both")) == 0
    assert run(str(recipe), "--out", str(base / "cap"), "--only", "cap") == 0
    assert run(str(recipe), "--out", str(base / "rand"), "--only", "rand") == 0
    return base, recipe


def test_only_runs_one_objective_and_records_it(runs):
    base, _ = runs
    assert json.loads((base / "cap" / "objectives.json").read_text()) == ["cap"]
    assert not (base / "both" / "objectives.json").exists()  # a whole-recipe folder needs no list
    assert not (base / "cap" / "pretrain" / "rand").exists()
    assert {r.split(",")[0] for r in (base / "cap" / "summary.csv").read_text().splitlines()[1:]} == {"cap"}
    # recipe.yaml keeps the whole recipe: the comparison the folder is part of.
    assert (base / "cap" / "recipe.yaml").read_bytes() == (base / "both" / "recipe.yaml").read_bytes()


def test_merged_folder_is_byte_identical_to_one_run_of_both(runs, tmp_path, monkeypatch):
    base, _ = runs
    from radtex_bench.evaluation.evaluator import Evaluator

    def no_scoring(*args, **kwargs):
        raise AssertionError("merge rescored a cell")

    monkeypatch.setattr(Evaluator, "_save_cell", staticmethod(no_scoring))
    out = tmp_path / "merged"
    assert main(["--quiet", "merge", str(base / "cap"), str(base / "rand"), "--out", str(out)]) == 0
    for name in TABLES:
        assert (out / name).read_bytes() == (base / "both" / name).read_bytes(), name
    for plot in (base / "both" / "plots").glob("*.png"):
        assert (out / "plots" / plot.name).read_bytes() == plot.read_bytes(), plot.name
    for name in ("encoder.safetensors", "heads.safetensors", "tokenizer.json"):
        assert (out / "pretrain/cap" / name).read_bytes() == (base / "both/pretrain/cap" / name).read_bytes()
    assert not (out / "objectives.json").exists()  # it now holds the whole recipe


def test_merge_takes_the_objectives_order_from_the_recipe(runs, tmp_path):
    base, _ = runs
    out = tmp_path / "merged"
    assert main(["--quiet", "merge", str(base / "rand"), str(base / "cap"), "--out", str(out)]) == 0
    assert (out / "comparisons.csv").read_bytes() == (base / "both" / "comparisons.csv").read_bytes()


def test_a_label_held_twice_is_merged_when_identical(runs, tmp_path):
    base, _ = runs
    out = tmp_path / "merged"
    assert main(["--quiet", "merge", str(base / "both"), str(base / "cap"), "--out", str(out)]) == 0
    assert (out / "summary.csv").read_bytes() == (base / "both" / "summary.csv").read_bytes()


def test_merging_runs_with_another_seed_is_refused_naming_seed(runs, tmp_path, capsys):
    base, recipe = runs
    other = tmp_path / "rand-seed1"
    assert run(str(recipe), "--out", str(other), "--only", "rand", "--set", "seed=1") == 0
    capsys.readouterr()
    out = tmp_path / "merged"
    assert main(["merge", str(base / "cap"), str(other), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: merge:") and " differ in seed (0 vs 1)" in err and "\n" not in err
    assert not out.exists()


def copy_run(src, dst):
    shutil.copytree(src, dst)
    return dst


def edit_recipe(folder, edit) -> None:
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    edit(recipe)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda r: r["evaluation"].update(bootstrap=30), "evaluation.bootstrap (20 vs 30)"),
        (lambda r: r["encoder"].update(name="resnet34"), "encoder.name ('resnet18' vs 'resnet34')"),
        (lambda r: r["evaluation"].update(protocols=["linear", "knn"]), "evaluation.protocols"),
        (lambda r: r["data"].update(pathologies=["Edema"]), "data.pathologies"),
    ],
)
def test_folders_that_break_pairing_are_refused_naming_the_first_difference(
    runs, tmp_path, capsys, edit, named
):
    base, _ = runs
    other = copy_run(base / "rand", tmp_path / "rand")
    edit_recipe(other, edit)
    assert main(["merge", str(base / "cap"), str(other), "--out", str(tmp_path / "m")]) == 2
    assert f"differ in {named}" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_other_splits_are_refused(runs, tmp_path, capsys):
    base, _ = runs
    other = copy_run(base / "rand", tmp_path / "rand")
    splits = json.loads((other / "splits.json").read_text())
    splits["test"] = splits["test"][1:]
    (other / "splits.json").write_text(json.dumps(splits))
    assert main(["merge", str(base / "cap"), str(other), "--out", str(tmp_path / "m")]) == 2
    assert "differ in splits.json" in capsys.readouterr().err


def test_one_label_held_twice_with_other_settings_is_refused(runs, tmp_path, capsys):
    base, _ = runs
    other = copy_run(base / "cap", tmp_path / "cap-other")
    edit_recipe(other, lambda r: r["objectives"][0]["train"].update(lr=0.1))
    assert main(["merge", str(base / "cap"), str(other), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "both hold objective 'cap'" in err and "objective 'cap'.train.lr" in err


@pytest.mark.parametrize(
    "prepare, fragment",
    [
        (lambda d: (d / "summary.csv").unlink(), "has not finished its evaluation (no summary.csv)"),
        (lambda d: (d / "pretrain/cap/encoder.safetensors").unlink(), "objective 'cap' of"),
        (lambda d: (d / "recipe.yaml").unlink(), "holds no radtex-bench run"),
    ],
)
def test_unfinished_or_foreign_folders_are_refused(runs, tmp_path, capsys, prepare, fragment):
    base, _ = runs
    broken = copy_run(base / "cap", tmp_path / "cap")
    prepare(broken)
    assert main(["merge", str(broken), str(base / "rand"), "--out", str(tmp_path / "m")]) == 2
    assert fragment in capsys.readouterr().err


def test_merge_out_must_be_new(runs, tmp_path, capsys):
    base, _ = runs
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x").write_text("")
    assert main(["merge", str(base / "cap"), str(base / "rand"), "--out", str(tmp_path / "m")]) == 2
    assert "exists and is not empty" in capsys.readouterr().err


def test_unknown_only_label_exits_2_with_a_suggestion(runs, tmp_path, capsys):
    _, recipe = runs
    assert main(["run", str(recipe), "--out", str(tmp_path / "o"), "--only", "capp"]) == 2
    err = capsys.readouterr().err
    assert "--only capp: no objective with that label" in err and "did you mean 'cap'?" in err
    assert not (tmp_path / "o").exists()


def test_resume_keeps_the_selection_and_only_adds_objectives(runs, tmp_path):
    base, recipe = runs
    folder = copy_run(base / "cap", tmp_path / "cap")
    # --resume without --only continues what the folder holds: cap, not the whole recipe.
    assert run(str(recipe), "--out", str(folder), "--resume") == 0
    assert json.loads((folder / "objectives.json").read_text()) == ["cap"]
    assert not (folder / "pretrain" / "rand").exists()
    assert (folder / "summary.csv").read_bytes() == (base / "cap" / "summary.csv").read_bytes()
    # --resume --only rand adds rand: the folder then holds the whole recipe, as one run of both.
    assert run(str(recipe), "--out", str(folder), "--resume", "--only", "rand") == 0
    assert not (folder / "objectives.json").exists()
    for name in ("summary.csv", "comparisons.csv"):
        assert (folder / name).read_bytes() == (base / "both" / name).read_bytes()


def test_resume_refuses_a_held_objective_that_would_stay_unfinished(runs, tmp_path, capsys):
    base, recipe = runs
    folder = copy_run(base / "cap", tmp_path / "cap")
    (folder / "pretrain/cap/encoder.safetensors").unlink()  # as if the job had been killed
    assert main(["run", str(recipe), "--out", str(folder), "--resume", "--only", "rand"]) == 2
    assert "holds objective 'cap', whose pretraining has not finished" in capsys.readouterr().err
    assert not (folder / "pretrain" / "rand").exists()


def test_plan_of_a_start_follows_the_folder(tmp_path):
    """What a start trains and what the folder then holds, without running anything."""
    from radtex_bench.config import dump_recipe, recipe_from_dict
    from radtex_bench.errors import UserError
    from radtex_bench.rundir import RunDir

    def recipe(*labels):
        return recipe_from_dict({"name": "p", "objectives": [{"name": "random", "label": x} for x in labels]})

    def folder(name, labels, finished, held=None):
        paths = RunDir(tmp_path / name)
        paths.root.mkdir()
        paths.recipe.write_text(dump_recipe(recipe(*labels)))
        for label in finished:
            paths.encoder(label).parent.mkdir(parents=True)
            paths.encoder(label).write_bytes(b"")
        if held is not None:
            paths.held.write_text(json.dumps(held))
        return paths

    def plan(paths, new, only=()):
        p = paths.plan(recipe(*new), tuple(only), resume=True)
        return list(p.train), list(p.hold), p.selection

    new = RunDir(tmp_path / "new").plan(recipe("a", "b"), ("b",))
    assert (new.train, new.hold, new.selection) == (("b",), ("b",), True)
    whole = folder("whole", ["a", "b"], ["a", "b"])
    assert plan(whole, ["a", "b", "c"]) == (["a", "b", "c"], ["a", "b", "c"], False)  # follows the recipe
    assert plan(whole, ["a", "b", "c", "d"], ["c"]) == (["c"], ["a", "b", "c"], True)  # adds c only
    part = folder("part", ["a", "b", "c"], ["a"], held=["a"])
    assert plan(part, ["a", "b", "c"]) == (["a"], ["a"], True)  # continues its selection
    assert plan(part, ["a", "b", "c"], ["c", "b"]) == (["b", "c"], ["a", "b", "c"], False)
    killed = folder("killed", ["a", "b"], [], held=["a"])
    assert plan(killed, ["a", "b"]) == (["a"], ["a"], True)
    with pytest.raises(UserError, match="holds objective 'a', whose pretraining has not finished"):
        plan(killed, ["a", "b"], ["b"])
    with pytest.raises(UserError, match="which the recipe no longer lists"):
        plan(part, ["x"])


def test_a_folder_given_twice_is_named(tmp_path):
    from radtex_bench.errors import UserError
    from radtex_bench.merging import Source, plan_merge

    a = tmp_path / "a"
    same = tmp_path / "b" / ".." / "a"
    with pytest.raises(UserError, match=f"^merge: the folder {a} is given twice; give each run folder once$"):
        plan_merge([Source(a, {}, ("x",)), Source(tmp_path / "c", {}, ("y",)), Source(a, {}, ("x",))])
    with pytest.raises(UserError, match=rf"the folder {a} is given twice \(as {a} and {same}\)"):
        plan_merge([Source(a, {}, ("x",)), Source(same, {}, ("x",))])


def test_data_changed_since_the_runs_is_refused_and_the_retry_works(runs, tmp_path, capsys):
    """Splits re-derived from the recipe's data must equal the runs' own; the refusal leaves only the log
    in --out, so the merge can be retried there once the data is back."""
    base, _ = runs
    data = tmp_path / "ds"
    shutil.copytree(base / "ds", data)
    folders = [copy_run(base / label, tmp_path / label) for label in ("cap", "rand")]
    for folder in folders:
        edit_recipe(folder, lambda r: r["data"]["pretrain"].update(root=str(data)))
    manifest = data / "manifest.csv"
    original = manifest.read_text()
    manifest.write_text("".join(original.splitlines(keepends=True)[:-2]))  # one patient fewer
    out = tmp_path / "m"
    capsys.readouterr()
    assert main(["merge", *map(str, folders), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "the evaluation data changed since" in err and "splits.json differs" in err
    assert sorted(p.name for p in out.iterdir()) == ["run.log"]
    manifest.write_text(original)
    assert main(["--quiet", "merge", *map(str, folders), "--out", str(out)]) == 0
    assert (out / "summary.csv").read_bytes() == (base / "both" / "summary.csv").read_bytes()
