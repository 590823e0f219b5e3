from pathlib import Path

import numpy as np
import pytest
import torch

from radtex_bench.encoders import Encoder
from radtex_bench.objectives import OBJECTIVES, SetupContext

REPORTS = [
    "FINDINGS: Large right pleural effusion. IMPRESSION: Effusion.",
    "FINDINGS: Lungs are clear. IMPRESSION: Normal chest.",
    "FINDINGS: Enlarged cardiac silhouette. IMPRESSION: Cardiomegaly.",
    "FINDINGS: Left apical pneumothorax. IMPRESSION: Pneumothorax.",
]


def make(name: str, tmp_path: Path, **params):
    torch.manual_seed(0)
    objective = OBJECTIVES.get(name)(Encoder("resnet18"), **params)
    objective.setup(
        SetupContext(
            reports=REPORTS * 5,
            labels=np.zeros((20, 1), np.float32),
            pathologies=["X"],
            out_dir=tmp_path,
            image_size=32,
            seed=0,
        )
    )
    return objective


def batch():
    g = torch.Generator().manual_seed(0)
    return {"image": torch.randn(4, 3, 32, 32, generator=g), "report": REPORTS}


@pytest.mark.parametrize(
    "name, params",
    [
        ("captioning", {"width": 64, "heads": 2, "vocab_size": 200, "min_frequency": 1}),
        (
            "captioning",
            {"width": 64, "heads": 2, "vocab_size": 200, "min_frequency": 1, "bidirectional": False},
        ),
        (
            "clip",
            {"width": 64, "heads": 2, "layers": 1, "embed_dim": 32, "vocab_size": 200, "min_frequency": 1},
        ),
    ],
)
def test_loss_decreases_on_a_tiny_batch(name, params, tmp_path):
    objective = make(name, tmp_path, **params)
    optimizer = torch.optim.AdamW(objective.parameters(), lr=3e-3)
    data = batch()
    losses = []
    for _ in range(25):
        out = objective(data)
        assert out["loss"].ndim == 0
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_bidirectional_sums_both_directions(tmp_path):
    objective = make("captioning", tmp_path, width=64, heads=2, vocab_size=200, min_frequency=1)
    objective.eval()
    out = objective(batch())
    assert set(out) >= {"loss", "forward_loss", "backward_loss"}
    assert torch.allclose(out["loss"], out["forward_loss"] + out["backward_loss"])
    assert objective.output.weight is objective.embedding.tokens.weight  # tied, shared by both decoders


def test_captioning_gradients_reach_the_encoder(tmp_path):
    objective = make("captioning", tmp_path, width=64, heads=2, vocab_size=200, min_frequency=1)
    objective(batch())["loss"].backward()
    assert objective.encoder.model.conv1.weight.grad.abs().sum() > 0


def test_generate_produces_text(tmp_path):
    objective = make("captioning", tmp_path, width=64, heads=2, vocab_size=200, min_frequency=1).eval()
    texts = objective.generate(batch()["image"][:2], max_tokens=6)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_clip_temperature_is_learnable(tmp_path):
    objective = make(
        "clip", tmp_path, width=64, heads=2, layers=1, embed_dim=32, vocab_size=200, min_frequency=1
    )
    out = objective(batch())
    out["loss"].backward()
    assert objective.logit_scale.grad is not None and objective.logit_scale.grad != 0
    assert out["temperature"].item() == pytest.approx(0.07, rel=1e-3)


def test_random_is_not_trained():
    assert OBJECTIVES.get("random").pretrains is False
    assert OBJECTIVES.get("captioning").pretrains is True
