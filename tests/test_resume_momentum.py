"""Exact resume of a momentum objective: MoCo (momentum encoder on a cosine schedule + queue of keys)
killed with SIGKILL mid-epoch and resumed ends with the encoder, momentum encoder and queue of an
uninterrupted run (the SIGKILL pattern of tests/test_resume.py); BYOL and DINO (EMA teacher, DINO's
centre) crashed and resumed in process match too, down to the checkpoint's bytes."""

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


@pytest.mark.parametrize(
    "name, params",
    [
        ("byol", {"hidden_dim": 32, "projection_dim": 16}),
        ("dino", {"hidden_dim": 32, "bottleneck_dim": 16, "output_dim": 32}),
    ],
)
def test_byol_and_dino_resumed_after_a_crash_match_an_uninterrupted_run(tmp_path, name, params):
    """In process: the EMA teacher (on its cosine momentum schedule) and DINO's centre continue exactly."""
    from ddp_harness import Pixels, set_up_objective
    from test_resume import Crash

    from radtex_bench.config import TrainConfig
    from radtex_bench.data.pipeline import RadiographDataset
    from radtex_bench.engine.distributed import DistInfo
    from radtex_bench.engine.trainer import Trainer

    def trainer(out, hook=None) -> Trainer:
        objective = set_up_objective(name, params, ["a report"], out)
        dataset = RadiographDataset(
            Pixels(20), needs=["views"], seed=5, view_augment=objective.batch_view_transform(32)
        )
        cfg = TrainConfig(max_steps=6, batch_size=4, log_every=1, checkpoint_every=2, lr=1e-3)
        return Trainer(
            objective,
            dataset,
            cfg,
            out,
            torch.device("cpu"),
            DistInfo(),
            seed=5,
            workers=0,
            label=name,
            step_hook=hook,
        )

    reference = trainer(tmp_path / "ref")
    reference.fit()

    def crash(t: Trainer) -> None:
        if t.pos.step == 3:
            raise Crash

    with pytest.raises(Crash):
        trainer(tmp_path / "cut", crash).fit()
    torch.manual_seed(999)
    resumed = trainer(tmp_path / "cut")
    resumed.fit(resume=True)
    ref_state, cut_state = reference.objective.state_dict(), resumed.objective.state_dict()
    assert any(k.startswith("momentum_") for k in ref_state)
    for key in ref_state:  # online and momentum weights, DINO's centre, BatchNorm buffers
        assert torch.equal(ref_state[key], cut_state[key]), key
    assert (tmp_path / "cut" / "last.ckpt").read_bytes() == (tmp_path / "ref" / "last.ckpt").read_bytes()
