"""DDP on the CPU (gloo, 2 processes) for the objectives of issue 15: the split batch gives the
whole-batch loss and gradients (siglip, coca's contrastive part, gloria, moco, byol, vicreg, clip with
ConVIRT's weighting), MoCo's queue enqueues every rank's keys, and momentum objectives keep identical
ranks while training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from ddp_harness import Pixels, batch_rows, set_up_objective

from radtex_bench.config import TrainConfig
from radtex_bench.data.pipeline import RadiographDataset
from radtex_bench.engine.distributed import DistInfo
from radtex_bench.engine.trainer import Trainer

WORLD = 2
ROWS = 8  # the whole batch; each rank takes ROWS // WORLD of it
REPORTS = [  # the second rank's reports are longer: each rank pads its batch to a different length
    f"FINDINGS: finding {i % 3} on the {'left' if i % 2 else 'right'}. IMPRESSION: {i}{' stable' * (i // 4) * 3}."
    for i in range(ROWS)
]
TEXT = {"width": 32, "heads": 2, "embed_dim": 16, "vocab_size": 200, "min_frequency": 1}
PARAMS = {
    "siglip": {**TEXT, "layers": 1},
    "coca": TEXT,
    "gloria": {**TEXT, "layers": 1},
    "moco": {"hidden_dim": 32, "projection_dim": 16, "queue_size": 64, "temperature": 0.5},
    "dino": {"hidden_dim": 32, "bottleneck_dim": 16, "output_dim": 32},
    "byol": {"hidden_dim": 32, "projection_dim": 16},
    "vicreg": {"hidden_dim": 32, "projection_dim": 16},
    # ConVIRT's weighting of clip: an asymmetric loss, each rank's rows against every rank's columns
    "convirt": {**TEXT, "layers": 1, "image_to_text_weight": 0.75},
}
#: Cases that are another objective with other settings.
OBJECTIVE = {"convirt": "clip"}
#: The part of each loss that is global over ranks (coca's captioning term is a per-rank token mean, as
#: in open_clip's CoCaLoss and VirTex).
PART = {
    "siglip": "loss",
    "coca": "contrastive_loss",
    "gloria": "loss",
    "moco": "loss",
    "byol": "loss",
    "vicreg": "loss",  # lightly's VICRegLoss gathers the views for the variance and covariance terms
    "convirt": "loss",
}
TRAINED = ("moco", "dino")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread, and a busy shared CPU cannot oversubscribe it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_objective(name: str, out_dir: Path, rank: int = 0, world_size: int = 1, barrier=lambda: None):
    return set_up_objective(
        OBJECTIVE.get(name, name), PARAMS[name], REPORTS, out_dir, rank, world_size, barrier
    )


def whole_batch(name: str, rows: slice = slice(None)) -> dict:
    return batch_rows(OBJECTIVE.get(name, name), REPORTS, rows)


def part_and_grads(objective, name: str, batch: dict, world_size: int = 1):
    """Eval mode (BatchNorm on running statistics: a row's features do not depend on its batch-mates);
    the part's gradients averaged over ranks as DDP would (by hand: a part leaves some weights without
    a gradient, which DDP's reducer does not allow)."""
    objective.eval()
    part = objective(batch)[PART[name]]
    part.backward()
    grads = {}
    for key, p in objective.named_parameters():
        if p.grad is not None:
            grad = p.grad.clone()
            if world_size > 1:
                dist.all_reduce(grad)
                grad /= world_size
            grads[key] = grad
    return part.detach(), grads


def train_a_few_steps(name: str, out_dir: Path, info: DistInfo) -> dict[str, torch.Tensor]:
    """3 steps of the real Trainer (views through the batched device path), momentum updates included."""
    objective = make_objective(name, out_dir, info.rank, info.world_size, info.barrier)
    dataset = RadiographDataset(
        Pixels(24), needs=["views"], seed=5, view_augment=objective.batch_view_transform(32)
    )
    cfg = TrainConfig(max_steps=3, batch_size=4, log_every=1, checkpoint_every=3, lr=1e-3)
    Trainer(objective, dataset, cfg, out_dir, torch.device("cpu"), info, seed=5, workers=0, label=name).fit()
    return {k: v.clone() for k, v in objective.state_dict().items()}


def _worker(rank: int, tmp: str) -> None:
    from radtex_bench.ui import set_quiet

    set_quiet(True)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=WORLD)
    info = DistInfo(rank, WORLD, rank)
    out: dict = {}
    rows = slice(rank * ROWS // WORLD, (rank + 1) * ROWS // WORLD)
    for name in PART:
        objective = make_objective(name, Path(tmp) / name, rank, WORLD, dist.barrier)
        part, grads = part_and_grads(objective, name, whole_batch(name, rows), WORLD)
        dist.all_reduce(part)
        out[name] = {"part": part / WORLD, "grads": grads}
        if name == "moco":
            out[name]["queue"] = objective.queue.clone()
            out[name]["pointer"] = objective.loss_fn.memory_bank.bank_ptr.clone()
    for name in TRAINED:
        out[f"trained_{name}"] = train_a_few_steps(name, Path(tmp) / f"train_{name}", info)
    torch.save(out, Path(tmp) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(module_tmp) -> tuple[Path, list[dict]]:
    tmp = module_tmp
    torch.multiprocessing.spawn(_worker, args=(str(tmp),), nprocs=WORLD, join=True)
    return tmp, [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.parametrize("name", list(PART))
def test_split_batch_loss_and_gradients_equal_the_whole_batch(ranks, name):
    tmp, results = ranks
    objective = make_objective(name, tmp / name)  # reuses rank 0's tokenizer.json
    part, grads = part_and_grads(objective, name, whole_batch(name))
    for rank, result in enumerate(results):
        torch.testing.assert_close(result[name]["part"], part, rtol=1e-5, atol=1e-6)
        assert result[name]["grads"].keys() == grads.keys()
        for key, grad in grads.items():
            torch.testing.assert_close(
                result[name]["grads"][key], grad, rtol=1e-4, atol=1e-6, msg=f"rank {rank} {key}"
            )
    encoder_grads = [k for k in grads if k.startswith("encoder.")]
    assert encoder_grads and any(grads[k].abs().sum() > 0 for k in encoder_grads)
    if name == "moco":
        # the momentum copy is not trained by the optimiser
        assert not any(k.startswith("momentum_") for k in grads)


def test_moco_queue_holds_every_ranks_keys_in_the_single_process_order(ranks):
    tmp, results = ranks
    objective = make_objective("moco", tmp / "moco")
    before = objective.queue.clone()
    part_and_grads(objective, "moco", whole_batch("moco"))
    assert int(objective.loss_fn.memory_bank.bank_ptr) == ROWS  # the whole batch went in, not one rank's
    assert not torch.equal(objective.queue[:ROWS], before[:ROWS])
    assert torch.equal(objective.queue[ROWS:], before[ROWS:])
    for result in results:
        assert int(result["moco"]["pointer"]) == ROWS
        torch.testing.assert_close(result["moco"]["queue"], objective.queue, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", TRAINED)
def test_momentum_objectives_keep_ranks_identical_while_training(ranks, name):
    tmp, results = ranks
    first, second = (r[f"trained_{name}"] for r in results)
    assert first.keys() == second.keys()
    for key in first:  # online and momentum weights, queue / centre, aligned BatchNorm buffers
        assert torch.equal(first[key], second[key]), key
    initial = make_objective(name, tmp / f"train_{name}").state_dict()
    for key in ("encoder.model.conv1.weight", "momentum_encoder.model.conv1.weight"):
        assert not torch.equal(initial[key], first[key]), f"{key} did not move"
    # the momentum encoder is a moving average, not a copy of the online one
    assert not torch.equal(first["encoder.model.conv1.weight"], first["momentum_encoder.model.conv1.weight"])
    if name == "moco":
        assert int(first["loss_fn.memory_bank.bank_ptr"]) == 3 * 4 * WORLD  # 3 steps x 4 rows x 2 ranks
    ckpt = torch.load(tmp / f"train_{name}" / "last.ckpt", map_location="cpu", weights_only=True)
    assert any(k.startswith("momentum_encoder.") for k in ckpt["model"])
