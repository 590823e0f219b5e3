"""Exact resume: a run killed with SIGKILL and resumed ends with the very weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_CAPTIONING, write_tiny_recipe
from ddp_harness import Pixels
from safetensors.torch import load_file

from radtex_bench.config import TrainConfig
from radtex_bench.engine.distributed import DistInfo
from radtex_bench.engine.trainer import Trainer
from radtex_bench.objectives import Objective

LABELS = ("captioning", "simclr")


def resume_recipe(tmp_path: Path, root: Path) -> Path:
    """captioning (dropout 0.1) and simclr (random views): 4 steps each, 3 batches per epoch, checkpoints at 2 (mid-epoch) and 4."""
    train = {"max_steps": 4, "batch_size": 8, "log_every": 1, "checkpoint_every": 2, "lr": 1e-3}
    objectives = [
        {"name": "captioning", "params": {**TINY_CAPTIONING, "dropout": 0.1}, "train": train},
        {"name": "simclr", "params": {"hidden_dim": 64, "projection_dim": 32}, "train": train},
    ]
    evaluation = {"budgets": [4], "seeds": 1, "bootstrap": 10}
    return write_tiny_recipe(tmp_path / "resume.yaml", root, objectives, evaluation, "resume")


def launch(recipe: Path, out: Path, resume: bool = False) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "HF_HUB_OFFLINE": "1"}
    argv = [
        sys.executable,
        "-m",
        "radtex_bench",
        "--quiet",
        "run",
        str(recipe),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    return subprocess.Popen(
        argv + (["--resume"] if resume else []),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_after_checkpoint(proc: subprocess.Popen, ckpt: Path, timeout: float = 120.0) -> None:
    """SIGKILL ``proc`` as soon as ``ckpt`` exists (written atomically, so it is complete)."""
    deadline = time.monotonic() + timeout
    while not ckpt.exists():
        assert proc.poll() is None, f"run ended before {ckpt} appeared: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"{ckpt} did not appear in {timeout} s"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def position(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["position"]


def losses(run: Path, label: str) -> list[tuple[int, float]]:
    lines = (run / "pretrain" / label / "metrics.jsonl").read_text().splitlines()
    return [(m["step"], m["loss"]) for m in map(json.loads, lines)]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(a), load_file(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.mark.slow
def test_sigkill_and_resume_is_bit_identical(tmp_path):
    from conftest import write_manifest

    write_manifest(tmp_path / "ds", n=40)
    recipe = resume_recipe(tmp_path, tmp_path / "ds")
    reference = launch(recipe, tmp_path / "ref")  # runs alongside the interrupted one (one thread each)
    cut = tmp_path / "cut"
    # 1. killed mid-epoch while training captioning (dropout active)
    kill_after_checkpoint(launch(recipe, cut), cut / "pretrain" / "captioning" / "last.ckpt")
    assert not (cut / "pretrain" / "captioning" / "encoder.safetensors").exists()
    assert position(cut / "pretrain" / "captioning" / "last.ckpt")["batch"] != 0  # mid-epoch
    # 2. resumed, then killed mid-epoch while training simclr (random views)
    kill_after_checkpoint(launch(recipe, cut, resume=True), cut / "pretrain" / "simclr" / "last.ckpt")
    assert (cut / "pretrain" / "captioning" / "encoder.safetensors").exists()
    assert not (cut / "pretrain" / "simclr" / "encoder.safetensors").exists()
    assert position(cut / "pretrain" / "simclr" / "last.ckpt")["batch"] != 0
    # 3. resumed to the end
    final = launch(recipe, cut, resume=True)
    assert final.wait(timeout=300) == 0, final.stderr.read()
    assert reference.wait(timeout=300) == 0, reference.stderr.read()

    for label in LABELS:
        assert_same_weights(
            tmp_path / "ref" / "pretrain" / label / "encoder.safetensors",
            cut / "pretrain" / label / "encoder.safetensors",
        )
        assert losses(cut, label) == losses(tmp_path / "ref", label)
        assert [s for s, _ in losses(cut, label)] == list(range(1, 5))
        ckpt = Path("pretrain") / label / "last.ckpt"
        assert (cut / ckpt).read_bytes() == (tmp_path / "ref" / ckpt).read_bytes(), label
    assert "resumed from" in (cut / "run.log").read_text()


# -- the same property in-process, on a tiny model, for every step of a checkpoint cadence ---------


class TinyEncoder(torch.nn.Module):
    out_dim = 8

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, self.out_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)  # [B, out_dim]


class DropoutObjective(Objective):
    """Dropout + random views: both random streams a resume must continue exactly."""

    needs = {"views"}

    def __init__(self) -> None:
        super().__init__(TinyEncoder())
        self.head = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(8, 4))

    def forward(self, batch: dict) -> dict:
        a, b = (self.head(self.encoder(v)) for v in batch["views"])  # [B, 4] each
        return {"loss": (a - b).pow(2).mean() + a.pow(2).mean()}


def jitter(pixels: torch.Tensor) -> torch.Tensor:
    """A random view: uint8 [1, S, S] plus noise drawn from the global torch RNG (seeded per sample)."""
    return (pixels.int() + torch.randint(-20, 21, pixels.shape)).clamp(0, 255).to(torch.uint8)


class Crash(Exception):
    pass


def tiny_trainer(out: Path, hook=None) -> Trainer:
    """18 images in batches of 4: 4 steps per epoch, checkpoints every 2 steps, 9 steps."""
    from radtex_bench.data.pipeline import RadiographDataset

    dataset = RadiographDataset(Pixels(18, size=8), needs=["views"], view_transform=jitter, seed=3)
    torch.manual_seed(0)
    cfg = TrainConfig(
        max_steps=9, batch_size=4, checkpoint_every=2, log_every=1, grad_accum=1, warmup_steps=2
    )
    return Trainer(
        DropoutObjective(),
        dataset,
        cfg,
        out,
        torch.device("cpu"),
        DistInfo(),
        seed=3,
        workers=0,
        label="tiny",
        step_hook=hook,
    )


@pytest.mark.parametrize(
    "crash_at", [3, 5, 8]
)  # resumes from step 2 (mid-epoch), 4 (epoch end), 6 (mid-epoch)
def test_resume_after_a_crash_continues_exactly(tmp_path, crash_at):
    reference = tiny_trainer(tmp_path / "ref")
    reference.fit()

    def crash(trainer: Trainer) -> None:
        if trainer.pos.step == crash_at:
            raise Crash

    with pytest.raises(Crash):
        tiny_trainer(tmp_path / "cut", crash).fit()
    torch.manual_seed(12345)  # whatever the process did in between must not matter
    resumed = tiny_trainer(tmp_path / "cut")
    resumed.fit(resume=True)
    assert resumed.pos.step == 9
    for (name, a), b in zip(
        reference.objective.state_dict().items(), resumed.objective.state_dict().values()
    ):
        assert torch.equal(a, b), name
    # the checkpoint too, byte for byte: state read back from a file pickles like state never saved
    assert (tmp_path / "cut" / "last.ckpt").read_bytes() == (tmp_path / "ref" / "last.ckpt").read_bytes()
