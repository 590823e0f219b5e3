"""Mistakes found before any work: a late objective that cannot run is refused before the first one
trains, and running out of memory is one ``error:`` line (exit 2) naming the stage and what to lower."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_CAPTIONING, write_manifest, write_tiny_recipe

from radtex_bench.cli import main
from radtex_bench.config import load_recipe
from radtex_bench.errors import ConfigError, is_out_of_memory
from radtex_bench.objectives.captioning import CaptioningObjective

TRAIN = {"max_steps": 1, "batch_size": 4}
EVALUATION = {"budgets": [4], "seeds": 1, "bootstrap": 0}


def two_objectives(tmp_path, root, captioning_train=None, first="supervised"):
    supervised = {"name": "supervised", "train": TRAIN}
    captioning = {"name": "captioning", "params": TINY_CAPTIONING, "train": captioning_train or TRAIN}
    objectives = [supervised, captioning] if first == "supervised" else [captioning, supervised]
    return write_tiny_recipe(tmp_path / "r.yaml", root, objectives, EVALUATION, "preflight")


def refused(capsys, recipe, out, *args) -> str:
    """Runs the recipe, expects exit 2, returns its one stderr line."""
    assert main(["--quiet", "run", str(recipe), "--out", str(out), "--device", "cpu", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_objective_needing_reports_is_refused_before_any_pretraining(tmp_path, capsys):
    write_manifest(tmp_path / "ds", reports=False)
    out = tmp_path / "run"
    line = refused(capsys, two_objectives(tmp_path, tmp_path / "ds"), out)
    assert line.startswith(
        "error: objectives.1 (captioning): needs reports, but no pretraining image has one"
    )
    assert "--exclude captioning" in line
    assert not (out / "pretrain" / "supervised" / "encoder.safetensors").exists()
    assert not (out / "pretrain").exists()  # nothing written but the log: the folder can be reused


def test_batch_larger_than_the_pretraining_images_is_refused_before_any_pretraining(
    tmp_path, capsys, manifest_dir
):
    out = tmp_path / "run"
    recipe = two_objectives(tmp_path, manifest_dir, {"max_steps": 1, "batch_size": 100_000})
    line = refused(capsys, recipe, out)
    assert line.startswith("error: objectives.1.train.batch_size: ")
    assert "cannot fill one batch of 100000 per process x 1 process(es); lower it to at most" in line
    assert not (out / "pretrain" / "supervised" / "encoder.safetensors").exists()
    # The folder holds only the log: a rerun meets the same check, not "already holds a run".
    assert refused(capsys, recipe, out) == line


def test_grad_accum_beyond_one_epoch_is_refused_before_any_pretraining(tmp_path, capsys, manifest_dir):
    out = tmp_path / "run"
    recipe = two_objectives(tmp_path, manifest_dir, {"max_steps": 1, "batch_size": 4, "grad_accum": 100})
    line = refused(capsys, recipe, out)
    assert line.startswith("error: objectives.1.train.grad_accum: one epoch of 'captioning' has ")
    assert "fewer than grad_accum=100; lower it to at most" in line
    assert not (out / "pretrain" / "supervised" / "encoder.safetensors").exists()


def test_batch_size_is_per_process(tmp_path, manifest_dir):
    from radtex_bench.api import check_batches

    recipe = load_recipe(
        two_objectives(tmp_path, manifest_dir, {"max_steps": 1, "batch_size": 16}),
        ["objectives.0.train.batch_size=2"],
    )
    images = {"supervised": range(28), "captioning": range(28)}
    # 28 images fill one batch of 16 in one process, not one of 16 in each of two.
    check_batches(recipe, images, ["supervised", "captioning"], world_size=1)
    with pytest.raises(
        ConfigError, match=r"objectives\.1\.train\.batch_size: .* x 2 process\(es\); lower it to at most 14"
    ):
        check_batches(recipe, images, ["supervised", "captioning"], world_size=2)
    check_batches(recipe, images, ["supervised"], world_size=2)  # only the objectives this start trains


@pytest.mark.parametrize(
    "exc, expected",
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (
            RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory"),
            True,
        ),
        (MemoryError(), True),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
        (ValueError("out of memory"), False),
    ],
)
def test_is_out_of_memory(exc, expected):
    assert is_out_of_memory(exc) is expected


def oom_on_call(monkeypatch, calls_before: int = 0):
    """captioning's forward runs out of memory after ``calls_before`` successful calls."""
    forward = CaptioningObjective.forward
    calls = []

    def failing(self, batch):
        calls.append(1)
        if len(calls) > calls_before:
            raise RuntimeError(
                "DefaultCPUAllocator: can't allocate memory: you tried to allocate 204800000000 bytes"
            )
        return forward(self, batch)

    monkeypatch.setattr(CaptioningObjective, "forward", failing)


def test_out_of_memory_while_pretraining_names_the_objective_and_resume_still_works(
    tmp_path, capsys, manifest_dir, monkeypatch
):
    out = tmp_path / "run"
    recipe = two_objectives(tmp_path, manifest_dir, first="captioning")
    oom_on_call(monkeypatch)
    line = refused(capsys, recipe, out)
    assert line == (
        "error: objectives.0 (captioning): out of memory while pretraining; lower objectives.0.train.batch_size "
        "(raise objectives.0.train.grad_accum to keep the effective batch) or the model sizes in "
        "objectives.0.params (e.g. width), then rerun with --resume"
    )
    assert not (out / "pretrain" / "supervised" / "encoder.safetensors").exists()
    assert not (out / "pretrain" / "captioning").exists()  # nothing to resume from: started afresh
    monkeypatch.undo()
    fix = ["--resume", "--set", "objectives.0.train.batch_size=2"]
    assert main(["--quiet", "run", str(recipe), "--out", str(out), "--device", "cpu", *fix]) == 0
    for label in ("captioning", "supervised"):
        assert (out / "pretrain" / label / "encoder.safetensors").is_file()


def test_out_of_memory_after_a_checkpoint_keeps_it(tmp_path, capsys, manifest_dir, monkeypatch):
    out = tmp_path / "run"
    train = {"max_steps": 2, "batch_size": 4, "checkpoint_every": 1}
    recipe = two_objectives(tmp_path, manifest_dir, train, first="captioning")
    oom_on_call(monkeypatch, calls_before=1)
    line = refused(capsys, recipe, out)
    folder = out / "pretrain" / "captioning"
    assert line.startswith("error: objectives.0 (captioning): out of memory while pretraining; ")
    assert line.endswith(
        f"then delete {folder} (it holds the checkpoint of the old settings) and rerun with --resume"
    )
    assert (folder / "last.ckpt").is_file() and not (folder / "encoder.safetensors").exists()


def test_out_of_memory_while_evaluating_names_the_encoder(tmp_path, capsys, manifest_dir, monkeypatch):
    from radtex_bench.evaluation.evaluator import Evaluator

    def failing(self, encoder):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Evaluator, "evaluate", failing)
    recipe = write_tiny_recipe(
        tmp_path / "r.yaml", manifest_dir, [{"name": "random"}], EVALUATION, "preflight"
    )
    out = tmp_path / "run"
    line = refused(capsys, recipe, out)
    assert line == (
        "error: evaluation of 'random': out of memory; lower evaluation.batch_size (and "
        "evaluation.finetune.batch_size when finetune runs), then rerun with --resume"
    )
    assert not (out / "results.csv").exists()


def test_out_of_memory_elsewhere_is_a_user_error(tmp_path, capsys, monkeypatch):
    import radtex_bench.reporting

    def failing(run_dir):
        raise MemoryError

    monkeypatch.setattr(radtex_bench.reporting, "build_report", failing)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: out of memory (MemoryError); lower the batch size") and "Traceback" not in err
    )
