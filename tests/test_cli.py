"""The command line end to end, on tiny recipes."""

import csv
import json

import pytest
from conftest import TINY_CAPTIONING, write_tiny_recipe

from radtex_bench.cli import main

TINY_TRAIN = {"max_steps": 2, "batch_size": 8, "log_every": 1, "checkpoint_every": 1}


def tiny_recipe(tmp_path, root, **extra):
    objectives = [
        {"name": "captioning", "params": TINY_CAPTIONING, "train": TINY_TRAIN},
        {
            "name": "clip",
            "label": "clip-small",
            "params": {
                "width": 32,
                "heads": 2,
                "layers": 1,
                "embed_dim": 16,
                "vocab_size": 300,
                "min_frequency": 1,
            },
            "train": TINY_TRAIN,
        },
        {"name": "random"},
    ]
    evaluation = {"budgets": [4, 8], "seeds": 2, "bootstrap": 50}
    return write_tiny_recipe(tmp_path / "tiny.yaml", root, objectives, evaluation, "tiny", **extra)


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def finished_run(module_tmp):
    from conftest import write_manifest

    base = module_tmp
    write_manifest(base / "ds", n=60)
    recipe = tiny_recipe(base, base / "ds")
    out = base / "run"
    assert main(["--quiet", "run", str(recipe), "--out", str(out), "--device", "cpu"]) == 0
    return recipe, out


def test_run_writes_the_spec_layout(finished_run):
    _, out = finished_run
    for name in [
        "recipe.yaml",
        "run.log",
        "splits.json",
        "subsets.json",
        "results.csv",
        "summary.csv",
        "comparisons.csv",
        "report.md",
        "plots/auc_vs_budget.png",
    ]:
        assert (out / name).is_file(), name
    for label in ["captioning", "clip-small", "random"]:
        assert (out / "pretrain" / label / "encoder.safetensors").is_file()
    for label in ["captioning", "clip-small"]:
        assert (out / "pretrain" / label / "last.ckpt").is_file()
        metrics = [
            json.loads(line) for line in (out / "pretrain" / label / "metrics.jsonl").read_text().splitlines()
        ]
        assert [m["step"] for m in metrics] == [1, 2]
        assert all(m["images_per_s"] > 0 and "loss" in m for m in metrics)
        assert (out / "pretrain" / label / "tokenizer.json").is_file()


def test_results_and_summary_tables(finished_run):
    _, out = finished_run
    results = read_csv(out / "results.csv")
    assert list(results[0]) == ["objective", "protocol", "budget", "seed", "pathology", "auc", "auprc"]
    assert len(results) == 3 * 1 * 2 * 2 * 2  # objectives x protocols x budgets x seeds x pathologies
    assert {r["objective"] for r in results} == {"captioning", "clip-small", "random"}
    for r in results:
        assert r["auc"] == "" or 0.0 <= float(r["auc"]) <= 1.0
    summary = read_csv(out / "summary.csv")
    assert list(summary[0]) == [
        "objective",
        "protocol",
        "budget",
        "macro_auc",
        "macro_auc_std",
        "ci_low",
        "ci_high",
        "n_seeds",
        "macro_auprc",
        "macro_auprc_std",
        "auprc_ci_low",
        "auprc_ci_high",
    ]
    assert len(summary) == 3 * 2
    report = (out / "report.md").read_text()
    assert "auc_vs_budget.png" in report and "clip-small" in report


def test_splits_and_subsets_are_patient_disjoint(finished_run):
    _, out = finished_run
    splits = json.loads((out / "splits.json").read_text())
    subsets = json.loads((out / "subsets.json").read_text())
    patient = {row["image_path"]: row["patient_id"] for row in read_csv(out.parent / "ds" / "manifest.csv")}
    held_out = {patient[i] for i in splits["val"] + splits["test"]}
    assert not set(splits["train"]) & set(splits["test"])
    assert set(subsets) == {"0", "1"}
    for by_budget in subsets.values():
        assert len(by_budget["4"]) == 4 and len(by_budget["8"]) == 8
        assert set(by_budget["4"]) <= set(by_budget["8"])  # nested
        assert set(by_budget["8"]) <= set(splits["train"])
        assert not {patient[i] for i in by_budget["8"]} & held_out


def test_resolved_recipe_reloads(finished_run):
    from radtex_bench.config import load_recipe

    recipe_path, out = finished_run
    assert load_recipe(out / "recipe.yaml") == load_recipe(recipe_path)


def test_existing_run_is_refused_without_resume(finished_run, capsys):
    recipe, out = finished_run
    assert main(["--quiet", "run", str(recipe), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--resume" in err and "Traceback" not in err


def test_resume_skips_finished_work(finished_run, capsys):
    recipe, out = finished_run
    encoder = out / "pretrain" / "captioning" / "encoder.safetensors"
    before = encoder.stat().st_mtime_ns
    summary = (out / "summary.csv").read_text()
    assert main(["--quiet", "run", str(recipe), "--out", str(out), "--resume"]) == 0
    assert encoder.stat().st_mtime_ns == before
    assert (out / "summary.csv").read_text() == summary
    assert "pretraining already finished" in (out / "run.log").read_text()


def test_resume_with_a_different_recipe_is_refused(finished_run, capsys):
    recipe, out = finished_run
    assert main(["--quiet", "run", str(recipe), "--out", str(out), "--resume", "--set", "seed=3"]) == 2
    assert "seed differs" in capsys.readouterr().err


def test_report_rebuilds_from_csvs(finished_run):
    _, out = finished_run
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0
    assert "## Summary" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    "name, damage, fragment",
    [
        ("summary.csv", "foo,bar\n1,2\n", "summary.csv lacks the column(s) objective, protocol, budget"),
        ("results.csv", "x,y\n1,2\n", "results.csv lacks the column(s) objective, protocol"),
        ("results.csv", "", "results.csv is empty"),
        ("comparisons.csv", "protocol\nlinear\n", "comparisons.csv lacks the column(s) budget"),
    ],
)
def test_report_of_a_damaged_table_is_one_error_line_and_draws_nothing(
    finished_run, tmp_path, capsys, name, damage, fragment
):
    import shutil

    _, out = finished_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    (run / name).write_text(damage)
    plots = {p.name: p.read_bytes() for p in (run / "plots").glob("*.png")}
    shutil.rmtree(run / "plots")
    capsys.readouterr()
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and fragment in err and "\n" not in err
    assert "rerun the run with --resume to rewrite it" in err
    assert plots and not (run / "plots").exists()  # checked before the first plot is drawn


def test_list_json(capsys):
    assert main(["list", "objectives", "--json"]) == 0
    names = json.loads(capsys.readouterr().out)
    assert {"captioning", "clip", "random"} <= set(names)
    assert main(["list", "encoders", "--json"]) == 0
    assert {"resnet18", "resnet50"} <= set(json.loads(capsys.readouterr().out))


@pytest.mark.parametrize(
    "argv_tail, fragment",
    [
        (["run", "missing.yaml"], "recipe not found"),
        (["list", "things"], "'things' is not one of objectives, encoders, datasets, protocols (see"),
        (
            ["list", "objectivs"],
            "datasets, protocols; did you mean 'objectives'? (see radtex-bench list --help)",
        ),
        (["run", "RECIPE", "--device", "cdua"], "'cdua' is not one of auto, cpu, cuda; did you mean 'cuda'?"),
        (["run", "RECIPE", "--set", "evaluation.budgets=[4, 100000]"], "budget 100000 is larger than"),
        (["run", "RECIPE", "--set", "data.pathologies=[Pneumothorax]"], "Pneumothorax not labelled"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, manifest_dir, capsys, argv_tail, fragment):
    recipe = tiny_recipe(tmp_path, manifest_dir)
    argv = [str(recipe) if a == "RECIPE" else a for a in argv_tail]
    assert (
        main(
            ["--quiet", *argv, "--out", str(tmp_path / "o")]
            if argv[0] == "run" and "RECIPE" in argv_tail
            else argv
        )
        == 2
    )
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    assert not (tmp_path / "o" / "results.csv").exists()


def test_an_error_that_stops_a_run_is_the_last_line_of_run_log(tmp_path, capsys):
    from conftest import write_manifest

    write_manifest(tmp_path / "ds", n=20)
    evaluation = {"budgets": [1000], "seeds": 1, "bootstrap": 0}
    recipe = write_tiny_recipe(tmp_path / "r.yaml", tmp_path / "ds", [{"name": "random"}], evaluation, "big")
    out = tmp_path / "run"
    assert main(["--quiet", "run", str(recipe), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: evaluation.budgets: budget 1000 is larger") and err.count("error:") == 1
    last = (out / "run.log").read_text().splitlines()[-1]
    assert last.split(" ERROR ", 1)[1] == err  # the terminal's line, once there and once in the log
    assert [p.name for p in out.iterdir()] == ["run.log"]  # nothing else, so nothing half-written
    fixed = ["--set", "evaluation.budgets=[4]"]  # rerunning into the folder works, without --resume
    assert main(["--quiet", "run", str(recipe), "--out", str(out), "--device", "cpu", *fixed]) == 0
    assert (out / "results.csv").is_file()


def test_an_interrupt_is_the_last_line_of_run_log(tmp_path, capsys, monkeypatch):
    from conftest import write_manifest

    from radtex_bench import api
    from radtex_bench.errors import Interrupted

    def stop(*args, **kwargs):
        raise Interrupted("SIGTERM")

    monkeypatch.setattr(api, "load_run_data", stop)
    write_manifest(tmp_path / "ds", n=20)
    evaluation = {"budgets": [4], "seeds": 1, "bootstrap": 0}
    recipe = write_tiny_recipe(tmp_path / "r.yaml", tmp_path / "ds", [{"name": "random"}], evaluation, "stop")
    out = tmp_path / "run"
    assert main(["run", str(recipe), "--out", str(out), "--device", "cpu"]) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("interrupted by SIGTERM: ") and "\n" not in err  # once, though run.log has it too
    log = (out / "run.log").read_text()
    assert log.splitlines()[-1].split(" WARNING ", 1)[1] == err
    assert "internal error" not in log and "Traceback" not in log


@pytest.mark.parametrize("what", ["objectives", "encoders", "datasets", "protocols"])
def test_list_aligns_every_description_to_the_longest_name(capsys, what):
    assert main(["list", what]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    described = [
        (line, name) for line, name in zip(lines, names) if line.strip() != name
    ]  # a plug-in may have none
    starts = {len(line) - len(line[len(name) :].lstrip()) for line, name in described}
    assert starts == {max(map(len, names)) + 2}
    if what == "objectives":
        assert "token_classification" in names
    if what == "encoders":  # the open family, after the registered names (docs/encoders.md)
        assert names[-1] == "timm:<model_name>" and "any timm model" in lines[-1]
        assert "efficientnet_b0" in names


def test_the_python_api_takes_a_recipe_dict_and_single_strings(tmp_path, manifest_dir):
    """A notebook builds the recipe as a dict; one override or label is a string, not its characters."""
    import yaml

    from radtex_bench import run
    from radtex_bench.config import recipe_from_dict
    from radtex_bench.errors import ConfigError, UserError

    raw = yaml.safe_load(tiny_recipe(tmp_path, manifest_dir).read_text())
    raw["objectives"] = [{"name": "random"}]
    with pytest.raises(ConfigError, match="unknown objective 'randon'"):
        run({**raw, "objectives": [{"name": "randon"}]}, out=tmp_path / "bad")
    with pytest.raises(ConfigError, match=r"--set evaluation.seeds=0: evaluation.seeds: must be >= 1"):
        run(raw, out=tmp_path / "bad", overrides="evaluation.seeds=0")
    with pytest.raises(UserError, match="--only randon: no objective with that label"):
        run(raw, out=tmp_path / "bad", only="randon")
    with pytest.raises(UserError, match="a recipe must be a mapping"):
        recipe_from_dict("name: x")
    out = run(raw, out=tmp_path / "ok", device="cpu", only="random", overrides="evaluation.seeds=1")
    assert (out / "summary.csv").exists()
