"""Warnings reach the terminal as ``warning: ...`` lines, once per job, and stay silent under --quiet."""

from __future__ import annotations

import logging

import pytest

from radtex_bench.cli import main
from radtex_bench.ui import log


@pytest.fixture
def clashing_csv(tmp_path):
    path = tmp_path / "reports.csv"
    path.write_text('report,Edema\n"FINDINGS: Mild pulmonary edema.",1\n')
    return path


def label(path, *flags):
    return main([*flags, "label", str(path), "--column", "report", "--out", str(path.with_name("out.csv"))])


def test_a_warning_is_one_unwrapped_line(clashing_csv, capsys):
    assert label(clashing_csv) == 0
    err = capsys.readouterr().err
    assert err == (
        f"warning: {clashing_csv}: its own column(s) Edema are kept, renamed 'Edema (input)', beside the "
        "labeler's columns of that name\n"
    )


def test_quiet_and_later_ranks_print_no_warning(clashing_csv, capsys, monkeypatch):
    assert label(clashing_csv, "--quiet") == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "1")  # a torchrun worker: rank 0 prints the job's warnings
    assert label(clashing_csv) == 0
    assert capsys.readouterr().err == ""


def test_errors_are_left_to_the_cli_and_handlers_are_not_stacked(clashing_csv, capsys):
    for _ in range(3):
        assert label(clashing_csv) == 0
    assert capsys.readouterr().err.count("warning: ") == 3
    log.error("internal detail")  # the CLI prints an error's one line itself
    assert "internal detail" not in capsys.readouterr().err
    assert log.getEffectiveLevel() <= logging.WARNING


def test_a_mistake_found_up_front_is_the_only_line_and_the_warnings_before_it_stay_in_run_log(
    tmp_path, capsys
):
    """A validation split without a negative warns; an impossible budget then stops the run: stderr is the
    one error line the CLI promises, and run.log keeps the warning. Without the mistake, the warning
    prints before the work starts."""
    import csv

    from conftest import write_manifest, write_tiny_recipe

    root = tmp_path / "ds"
    write_manifest(root, n=40, splits=True)
    rows = list(csv.reader(open(root / "manifest.csv")))
    split, edema = rows[0].index("split"), rows[0].index("Edema")
    for row in rows[1:]:
        if row[split] == "validate" and row[edema] == "0":
            row[edema] = ""
    with open(root / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    recipe = write_tiny_recipe(
        tmp_path / "r.yaml", root, [{"name": "random"}], {"budgets": [4], "seeds": 1}, "w"
    )
    out = tmp_path / "out"
    assert (
        main(["run", str(recipe), "--out", str(out), "--device", "cpu", "--set", "evaluation.budgets=[1000]"])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: evaluation.budgets: budget 1000 is larger than") and err.count("\n") == 1
    assert "no negative 'Edema' image in the validation split" in (out / "run.log").read_text()
    assert main(["run", str(recipe), "--out", str(tmp_path / "ok"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: data.pretrain: no negative 'Edema' image in the validation split")
