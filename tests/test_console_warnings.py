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
