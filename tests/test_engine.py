"""The training engine: schedule, parameter groups, accumulation, device views, metrics, stop signals."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from radtex_bench.config import TrainConfig
from radtex_bench.data.augment import ViewAugment
from radtex_bench.data.pipeline import RadiographDataset, collate
from radtex_bench.engine.distributed import DistInfo
from radtex_bench.engine.optim import param_groups, warmup_cosine
from radtex_bench.engine.trainer import Trainer
from radtex_bench.errors import Interrupted
from radtex_bench.objectives import Objective

IDENTITY = [
    0.0,
    0.0,
    1.0,
    1.0,
    0.0,
    1.0,
    1.0,
    1.0,
    0.0,
]  # centre, half-size, angle, flip, bright, contrast, blur


class Pixels:
    def __init__(self, n: int, size: int = 8, seed: int = 0) -> None:
        self.pixels = np.random.default_rng(seed).integers(0, 256, (n, size, size), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.pixels)

    def __call__(self, i: int) -> np.ndarray:
        return self.pixels[i]


class TinyEncoder(torch.nn.Module):
    out_dim = 4

    def __init__(self, size: int = 8) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * size * size, self.out_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)  # [B, out_dim]


class Regression(Objective):
    """A loss that is a mean over rows (as every objective's is), no BatchNorm, no randomness."""

    needs = {"image"}

    def __init__(self) -> None:
        super().__init__(TinyEncoder())
        self.head = torch.nn.Linear(4, 1)

    def forward(self, batch: dict) -> dict:
        return {"loss": self.head(self.encoder(batch["image"])).pow(2).mean()}


class ViewsProbe(Regression):
    """Records what the engine hands to an objective that needs only views."""

    needs = {"views"}

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict] = []

    def forward(self, batch: dict) -> dict:
        self.seen.append({k: (v if k == "index" else type(v)) for k, v in batch.items()})
        self.seen[-1]["views"] = [(v.dtype, tuple(v.shape)) for v in batch["views"]]
        return {"loss": sum(self.head(self.encoder(v)).pow(2).mean() for v in batch["views"])}


def trainer(objective, tmp_path: Path, n: int = 16, hook=None, dataset=None, **train) -> Trainer:
    cfg = TrainConfig(**{"max_steps": 2, "batch_size": 4, "checkpoint_every": 0, "log_every": 1, **train})
    dataset = dataset or RadiographDataset(Pixels(n), needs=sorted(objective.needs), seed=1)
    return Trainer(
        objective,
        dataset,
        cfg,
        tmp_path,
        torch.device("cpu"),
        DistInfo(),
        seed=1,
        workers=0,
        label="t",
        step_hook=hook,
    )


# -- optimiser and schedule ----------------------------------------------------------------------


def test_warmup_then_cosine_to_zero():
    f = warmup_cosine(4, 12)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0 and math.isclose(f(8), 0.5) and f(12) == 0.0
    assert all(f(s) >= f(s + 1) for s in range(4, 12))


def test_encoder_and_heads_get_their_own_learning_rates():
    model = Regression()
    groups = param_groups(model, model.encoder, TrainConfig(lr=1e-3, encoder_lr=1e-4, weight_decay=0.1))
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"encoder", "encoder_no_decay", "head", "head_no_decay"}
    assert by_name["encoder"]["lr"] == 1e-4 and by_name["head"]["lr"] == 1e-3
    assert by_name["encoder_no_decay"]["weight_decay"] == 0.0  # biases
    assert by_name["encoder"]["params"][0] is model.encoder.body[1].weight


def test_scheduler_moves_every_group(tmp_path):
    t = trainer(Regression(), tmp_path, max_steps=4, warmup_steps=2, lr=1e-2, encoder_lr=1e-3)
    t.fit()
    lrs = {g["name"]: g["lr"] for g in t.optimizer.param_groups}
    assert lrs["encoder"] == pytest.approx(0.0, abs=1e-12) and lrs["head"] == pytest.approx(0.0, abs=1e-12)
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["lr"] for m in metrics][:2] == pytest.approx([5e-4, 1e-3])  # warmup of the encoder group


def test_fp16_steps_the_grad_scaler_skips_do_not_warn_about_the_schedule(tmp_path):
    """GradScaler skips the first steps while it finds its scale; torch would warn that the scheduler
    stepped first, on every run, though the schedule advancing once per batch is what is intended."""
    import warnings

    t = trainer(Regression(), tmp_path, max_steps=3, precision="fp16")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t.fit()
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]
    assert t.scaler.is_enabled()


# -- accumulation and clipping -------------------------------------------------------------------


def test_gradient_accumulation_equals_one_big_batch(tmp_path):
    def weights(batch_size: int, accum: int) -> dict:
        torch.manual_seed(0)
        t = trainer(
            Regression(),
            tmp_path / f"{batch_size}x{accum}",
            max_steps=1,
            batch_size=batch_size,
            grad_accum=accum,
            grad_clip=None,
        )
        t.fit()
        return t.objective.state_dict()

    one, accumulated = weights(8, 1), weights(4, 2)  # the same 8 images: the permutation is shared
    for key in one:
        torch.testing.assert_close(accumulated[key], one[key], rtol=1e-5, atol=1e-7)


def test_gradients_are_clipped(tmp_path):
    seen = []

    def record(t: Trainer) -> None:
        seen.append(float(t.grad_norm))

    class Steep(Regression):
        def forward(self, batch: dict) -> dict:
            return {"loss": 1e4 * super().forward(batch)["loss"]}

    t = trainer(Steep(), tmp_path, hook=record, grad_clip=0.5, max_steps=1)
    before = {k: v.clone() for k, v in t.objective.state_dict().items()}
    t.fit()
    assert seen[0] > 0.5  # the norm before clipping
    metrics = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert metrics["grad_norm"] == pytest.approx(seen[0], rel=1e-3)
    assert any(not torch.equal(before[k], v) for k, v in t.objective.state_dict().items())


# -- batched view augmentation (the GPU path; device-agnostic, tested on the CPU) -----------------


def test_view_augment_identity_returns_the_input():
    pixels = torch.from_numpy(Pixels(3, size=16).pixels)[:, None]  # [3, 1, 16, 16]
    out = ViewAugment(16)(pixels, torch.tensor([IDENTITY] * 3))
    assert out.dtype == torch.uint8 and torch.equal(out, pixels)


def test_view_augment_crop_is_a_resize_of_the_box():
    pixels = torch.from_numpy(Pixels(1, size=16).pixels)[:, None]  # [1, 1, 16, 16]
    left_half = [-0.5, 0.0, 0.5, 1.0] + IDENTITY[4:]
    out = ViewAugment(16)(pixels, torch.tensor([left_half]))
    expected = F.interpolate(pixels[..., :8].float(), size=(16, 16), mode="bilinear", align_corners=False)
    # The last column samples a quarter pixel past the box: the warp reads the real neighbour there,
    # interpolate() of the cut-out box repeats its edge.
    assert (out.float() - expected.round())[..., :-1].abs().max() <= 1


def test_view_augment_rotation_blackens_corners_and_jitter_scales():
    pixels = torch.full((2, 1, 16, 16), 100, dtype=torch.uint8)
    rotated = IDENTITY[:4] + [math.radians(30)] + IDENTITY[5:]
    brighter = IDENTITY[:6] + [1.2] + IDENTITY[7:]
    out = ViewAugment(16)(pixels, torch.tensor([rotated, brighter]))
    assert out[0, 0, 0, 0] == 0 and out[0, 0, 8, 8] == 100
    assert torch.all(out[1] == 120)


def test_view_augment_blur_is_per_image():
    pixels = torch.from_numpy(Pixels(2, size=16).pixels)[:, None]
    blurred = IDENTITY[:8] + [1.5]
    out = ViewAugment(16, blur_probability=1.0)(pixels, torch.tensor([IDENTITY, blurred]))
    assert torch.equal(out[0], pixels[0])
    assert out[1].float().std() < pixels[1].float().std()


def test_view_parameters_are_drawn_per_sample_and_epoch():
    augment = ViewAugment(8)
    data = RadiographDataset(Pixels(4), needs=["views"], seed=7, view_augment=augment, n_views=2)
    item = data[(0, 3)]
    assert set(item) == {"index", "image", "view_params"} and item["view_params"].shape == (
        2,
        ViewAugment.N_PARAMS,
    )
    assert torch.equal(item["view_params"], data[(0, 3)]["view_params"])  # reproducible
    assert not torch.equal(item["view_params"], data[(1, 3)]["view_params"])  # a new draw each epoch
    assert not torch.equal(item["view_params"][0], item["view_params"][1])  # two different views
    crop_half = item["view_params"][:, 2:4]
    assert torch.all((crop_half > 0) & (crop_half <= 1))
    assert collate([data[(0, i)] for i in range(3)])["view_params"].shape == (3, 2, ViewAugment.N_PARAMS)


def test_trainer_makes_views_on_its_device_when_the_dataset_carries_parameters(tmp_path):
    probe = ViewsProbe()
    dataset = RadiographDataset(Pixels(16), needs=["views"], seed=1, view_augment=ViewAugment(8))
    trainer(probe, tmp_path, dataset=dataset).fit()
    first = probe.seen[0]
    assert "image" not in first and "view_params" not in first  # only what the objective needs
    assert first["views"] == [(torch.float32, (4, 3, 8, 8))] * 2


# -- metrics, progress, stopping -----------------------------------------------------------------


def test_metrics_have_throughput_and_memory_and_the_bar_shows_them(tmp_path):
    t = trainer(Regression(), tmp_path, max_steps=3, log_every=2)
    t.fit()
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [2, 3]
    assert all(m["images_per_s"] > 0 and m["peak_mem_mb"] > 0 for m in metrics)


def test_progress_text_reports_images_per_second(tmp_path):
    t = trainer(Regression(), tmp_path)
    t.window.add({"loss": torch.tensor(2.0)}, 4)
    text = t._log()
    assert text.startswith("loss 2.000 | ") and " img/s | " in text and text.endswith(" MB")


def test_sigint_stops_at_a_step_boundary_with_a_checkpoint(tmp_path):
    def interrupt(t: Trainer) -> None:
        if t.pos.step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    t = trainer(Regression(), tmp_path, hook=interrupt, max_steps=10)
    with pytest.raises(Interrupted, match="SIGINT"):
        t.fit()
    state = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["position"]["step"] == 2 and len(state["rng_per_rank"]) == 1
    resumed = trainer(Regression(), tmp_path, max_steps=10)
    resumed.fit(resume=True)
    assert resumed.pos.step == 10
