"""DDP on the CPU (gloo): gathered contrastive losses, identical ranks, and ``torchrun`` end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import yaml
from ddp_harness import Pixels, batch_rows, set_up_objective

from radtex_bench.config import TrainConfig
from radtex_bench.data.pipeline import RadiographDataset
from radtex_bench.engine.distributed import DistInfo
from radtex_bench.engine.trainer import Trainer

WORLD = 2
ROWS = 8  # the whole batch; each rank takes ROWS // WORLD of it
REPORTS = [
    f"FINDINGS: finding {i % 3} on the {'left' if i % 2 else 'right'}. IMPRESSION: {i}." for i in range(ROWS)
]
PARAMS = {
    "clip": {"width": 32, "heads": 2, "layers": 1, "embed_dim": 16, "vocab_size": 200, "min_frequency": 1},
    "simclr": {"hidden_dim": 32, "projection_dim": 16, "temperature": 0.5},
}


def make_objective(name: str, out_dir: Path, rank: int = 0, world_size: int = 1, barrier=lambda: None):
    return set_up_objective(name, PARAMS[name], REPORTS, out_dir, rank, world_size, barrier)


def whole_batch(name: str, rows: slice = slice(None)) -> dict:
    return batch_rows(name, REPORTS, rows)


def loss_and_grads(
    model: torch.nn.Module, named, batch: dict
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eval mode: BatchNorm uses running statistics, so a row's features do not depend on its batch-mates."""
    model.eval()
    loss = model(batch)["loss"]
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in named if p.grad is not None}


def train_a_few_steps(name: str, out_dir: Path, info: DistInfo) -> dict[str, torch.Tensor]:
    """3 steps of the real Trainer under DDP (simclr through the batched device-view path)."""
    objective = make_objective(name, out_dir, info.rank, info.world_size, info.barrier)
    augment = objective.batch_view_transform(32) if name == "simclr" else None
    dataset = RadiographDataset(
        Pixels(24), needs=sorted(objective.needs), reports=REPORTS * 3, seed=5, view_augment=augment
    )
    cfg = TrainConfig(max_steps=3, batch_size=4, log_every=1, checkpoint_every=2, lr=1e-3)
    Trainer(objective, dataset, cfg, out_dir, torch.device("cpu"), info, seed=5, workers=0, label=name).fit()
    return {k: v.clone() for k, v in objective.state_dict().items()}


def _worker(rank: int, tmp: str) -> None:
    from radtex_bench.ui import set_quiet

    set_quiet(True)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=WORLD)
    from torch.nn.parallel import DistributedDataParallel

    info = DistInfo(rank, WORLD, rank)
    out: dict = {}
    rows = slice(rank * ROWS // WORLD, (rank + 1) * ROWS // WORLD)
    for name in PARAMS:
        objective = make_objective(name, Path(tmp) / name, rank, WORLD, dist.barrier)
        ddp = DistributedDataParallel(objective)  # averages gradients over ranks in backward
        loss, grads = loss_and_grads(ddp, objective.named_parameters(), whole_batch(name, rows))
        dist.all_reduce(loss)
        out[name] = {"loss": loss / WORLD, "grads": grads}
        out[f"trained_{name}"] = train_a_few_steps(name, Path(tmp) / f"train_{name}", info)
    torch.save(out, Path(tmp) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(module_tmp) -> tuple[Path, list[dict]]:
    tmp = module_tmp
    torch.multiprocessing.spawn(_worker, args=(str(tmp),), nprocs=WORLD, join=True)
    return tmp, [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.parametrize("name", list(PARAMS))
def test_gathered_loss_and_gradients_match_one_process(ranks, name):
    tmp, results = ranks
    objective = make_objective(name, tmp / name)  # reuses rank 0's tokenizer.json
    loss, grads = loss_and_grads(objective, objective.named_parameters(), whole_batch(name))
    for rank, result in enumerate(results):
        torch.testing.assert_close(result[name]["loss"], loss, rtol=1e-5, atol=1e-6)
        assert result[name]["grads"].keys() == grads.keys()
        for key, grad in grads.items():
            # DDP's average of per-rank gradients == the gradient of the whole-batch loss (not W times it)
            torch.testing.assert_close(
                result[name]["grads"][key], grad, rtol=1e-4, atol=1e-6, msg=f"rank {rank} {key}"
            )
    encoder_grads = [k for k in grads if k.startswith("encoder.")]
    assert encoder_grads and any(grads[k].abs().sum() > 0 for k in encoder_grads)


@pytest.mark.parametrize("name", list(PARAMS))
def test_ranks_hold_identical_weights_after_training(ranks, name):
    tmp, results = ranks
    first, second = (r[f"trained_{name}"] for r in results)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key  # parameters and (aligned) BatchNorm buffers
    initial = make_objective(name, tmp / f"train_{name}").state_dict()
    assert not torch.equal(initial["encoder.model.conv1.weight"], first["encoder.model.conv1.weight"])
    ckpt = torch.load(tmp / f"train_{name}" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["position"]["step"] == 3 and len(ckpt["rng_per_rank"]) == WORLD
    metrics = [
        json.loads(line) for line in (tmp / f"train_{name}" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [m["step"] for m in metrics] == [1, 2, 3]  # written once (rank 0), not once per rank
    assert all(m["images_per_s"] > 0 for m in metrics)


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
    reason="torchrun is not installed beside this Python",
)
def test_torchrun_two_processes_end_to_end(tmp_path):
    from conftest import write_manifest

    write_manifest(tmp_path / "ds", n=40)
    train = {"max_steps": 2, "batch_size": 4, "log_every": 1, "checkpoint_every": 1}
    recipe = {
        "name": "ddp",
        "data": {
            "pretrain": {"kind": "manifest", "root": str(tmp_path / "ds")},
            "pathologies": ["Cardiomegaly"],
        },
        "encoder": {"name": "resnet18", "image_size": 32},
        "objectives": [{"name": "clip", "params": PARAMS["clip"], "train": train}, {"name": "random"}],
        "evaluation": {"budgets": [4], "seeds": 1, "bootstrap": 10},
    }
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    torchrun = Path(sys.executable).parent / "torchrun"
    argv = [
        str(torchrun),
        "--standalone",
        f"--nproc_per_node={WORLD}",
        "-m",
        "radtex_bench",
        "--quiet",
        "run",
        str(tmp_path / "ddp.yaml"),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    log = (out / "run.log").read_text()
    assert "2 process(es)" in log and "batch 4 x 2 process(es)" in log
    assert (out / "run.rank1.log").is_file()
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert [f for f in files if "rank" in f] == ["run.rank1.log"]  # rank 1 writes only its log
    assert {"results.csv", "summary.csv", "report.md", "pretrain/clip/encoder.safetensors"} <= files
    metrics = (out / "pretrain" / "clip" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(m)["step"] for m in metrics] == [1, 2]
    # 2 processes x 4 images: one step sees 8 of the 40 images' pretraining split
    ckpt = torch.load(out / "pretrain" / "clip" / "last.ckpt", map_location="cpu", weights_only=True)
    assert len(ckpt["rng_per_rank"]) == WORLD
