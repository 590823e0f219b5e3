"""Exact resume of a momentum objective: MoCo (momentum encoder on a cosine schedule + queue of keys)
killed with SIGKILL mid-epoch and resumed ends with the encoder, momentum encoder and queue of an
uninterrupted run (the SIGKILL pattern of tests/test_resume.py)."""

from __future__ import annotations

import pytest
import torch
from conftest import write_manifest, write_tiny_recipe
from test_resume import assert_same_weights, kill_after_checkpoint, launch, losses, position


@pytest.mark.slow
def test_moco_killed_and_resumed_matches_an_uninterrupted_run(tmp_path):
    write_manifest(tmp_path / "ds", n=40)
    train = {"max_steps": 6, "batch_size": 8, "log_every": 1, "checkpoint_every": 2, "lr": 1e-3}
    params = {"hidden_dim": 32, "projection_dim": 16, "queue_size": 24, "momentum": 0.9, "momentum_end": 0.99}
    objectives = [{"name": "moco", "params": params, "train": train}]
    evaluation = {"budgets": [4], "seeds": 1, "bootstrap": 0}
    recipe = write_tiny_recipe(tmp_path / "moco.yaml", tmp_path / "ds", objectives, evaluation, "moco")

    reference = launch(recipe, tmp_path / "ref")  # runs alongside the interrupted one (one thread each)
    cut = tmp_path / "cut"
    ckpt = cut / "pretrain" / "moco" / "last.ckpt"
    kill_after_checkpoint(launch(recipe, cut), ckpt)
    assert not (cut / "pretrain" / "moco" / "encoder.safetensors").exists()
    assert position(ckpt)["step"] < 6 and position(ckpt)["batch"] != 0  # killed mid-epoch, mid-run
    final = launch(recipe, cut, resume=True)
    assert final.wait(timeout=300) == 0, final.stderr.read()
    assert reference.wait(timeout=300) == 0, reference.stderr.read()

    assert_same_weights(
        tmp_path / "ref" / "pretrain" / "moco" / "encoder.safetensors",
        cut / "pretrain" / "moco" / "encoder.safetensors",
    )
    assert losses(cut, "moco") == losses(tmp_path / "ref", "moco")
    assert [s for s, _ in losses(cut, "moco")] == list(range(1, 7))
    # the state only the momentum objective has: its EMA encoder and head, the queue and its pointer
    ref_state = torch.load(tmp_path / "ref" / "pretrain" / "moco" / "last.ckpt", weights_only=True)["model"]
    cut_state = torch.load(ckpt, weights_only=True)["model"]
    momentum_keys = [k for k in ref_state if k.startswith(("momentum_", "loss_fn.memory_bank."))]
    assert (
        "loss_fn.memory_bank.bank" in momentum_keys and "momentum_encoder.model.conv1.weight" in momentum_keys
    )
    for key in momentum_keys:
        assert torch.equal(ref_state[key], cut_state[key]), key
    assert "resumed from" in (cut / "run.log").read_text()
