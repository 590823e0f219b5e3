"""simclr, imagenet, supervised."""

import numpy as np
import pytest
import torch
import torchvision
from conftest import write_tiny_recipe

from radtex_bench.data.augment import XrayAugment
from radtex_bench.encoders import Encoder
from radtex_bench.errors import UserError
from radtex_bench.objectives import OBJECTIVES, SetupContext
from radtex_bench.objectives.imagenet import imagenet_weights_file


def ctx(tmp_path, labels=None):
    labels = np.zeros((4, 2), np.float32) if labels is None else labels
    return SetupContext(
        reports=["x"] * len(labels),
        labels=labels,
        pathologies=["A", "B"],
        out_dir=tmp_path,
        image_size=32,
        seed=0,
    )


def test_simclr_views_are_uint8_reproducible_and_unflipped():
    transform = XrayAugment().per_image(32)
    image = torch.arange(48 * 40, dtype=torch.int64).reshape(1, 48, 40).remainder(256).to(torch.uint8)
    torch.manual_seed(1)
    a = transform(image)
    torch.manual_seed(1)
    b = transform(image)
    assert a.dtype == torch.uint8 and a.shape == (1, 32, 32)
    assert torch.equal(a, b)
    names = [type(t).__name__ for t in transform.transforms]
    assert "RandomHorizontalFlip" not in names and "ColorJitter" in names
    assert "RandomHorizontalFlip" in [
        type(t).__name__ for t in XrayAugment(horizontal_flip=True).per_image(32).transforms
    ]


def test_simclr_loss_decreases(tmp_path):
    torch.manual_seed(0)
    objective = OBJECTIVES.get("simclr")(Encoder("resnet18"), hidden_dim=64, projection_dim=32)
    objective.setup(ctx(tmp_path))
    g = torch.Generator().manual_seed(0)
    base = torch.randn(8, 3, 32, 32, generator=g)
    views = [
        base + 0.1 * torch.randn(8, 3, 32, 32, generator=g),
        base + 0.1 * torch.randn(8, 3, 32, 32, generator=g),
    ]
    optimizer = torch.optim.AdamW(objective.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = objective({"views": views})["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_imagenet_offline_error_names_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    cls = OBJECTIVES.get("imagenet")
    with pytest.raises(UserError) as info:
        cls.preflight("resnet18", {"weights": "DEFAULT"})
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message
    assert str(tmp_path / "th" / "hub" / "checkpoints") in message


def test_imagenet_loads_weights_placed_in_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    path, _ = imagenet_weights_file("resnet18")
    path.parent.mkdir(parents=True)
    torch.manual_seed(123)
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), path)
    cls = OBJECTIVES.get("imagenet")
    cls.preflight("resnet18", {"weights": "DEFAULT"})
    objective = cls(Encoder("resnet18"))
    objective.setup(ctx(tmp_path))
    assert torch.equal(objective.encoder.model.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    assert cls.pretrains is False


def test_imagenet_unknown_weights_name(tmp_path):
    with pytest.raises(UserError, match="IMAGENET1K_V1"):
        imagenet_weights_file("resnet18", "IMAGENET22K")


def test_supervised_masks_missing_labels(tmp_path):
    torch.manual_seed(0)
    objective = OBJECTIVES.get("supervised")(Encoder("resnet18")).eval()
    objective.setup(ctx(tmp_path, np.array([[1, 0], [0, np.nan]], np.float32)))
    assert objective.head.out_features == 2
    images = torch.randn(2, 3, 32, 32)
    labels = torch.tensor([[1.0, np.nan], [np.nan, np.nan]])
    loss = objective({"image": images, "labels": labels})["loss"]
    logits = objective.head(objective.encoder(images))
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[0, 0], torch.tensor(1.0))
    assert torch.allclose(loss, expected, atol=1e-6)  # only the one known label counts


def test_supervised_refuses_unlabelled_data(tmp_path):
    objective = OBJECTIVES.get("supervised")(Encoder("resnet18"))
    with pytest.raises(UserError, match="no labels"):
        objective.setup(ctx(tmp_path, np.full((3, 2), np.nan, np.float32)))


def test_supervised_sees_only_pretraining_split_labels(tmp_path, monkeypatch):
    import json

    from conftest import write_manifest

    from radtex_bench.cli import main
    from radtex_bench.objectives.supervised import SupervisedObjective

    seen = {}
    original = SupervisedObjective.setup

    def spy(self, context):
        seen["n"] = len(context.labels)
        seen["reports"] = list(context.reports)
        return original(self, context)

    monkeypatch.setattr(SupervisedObjective, "setup", spy)
    write_manifest(tmp_path / "ds", n=40)
    objectives = [{"name": "supervised", "train": {"max_steps": 1, "batch_size": 4}}]
    evaluation = {"budgets": [4], "seeds": 1, "bootstrap": 0}
    write_tiny_recipe(tmp_path / "r.yaml", tmp_path / "ds", objectives, evaluation, "sup")
    assert main(["--quiet", "run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run")]) == 0
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())
    held_out = set(splits["val"]) | set(splits["test"])
    assert seen["n"] == 40 - len(held_out)
    # Reports carry the image number: none of a held-out image's text reached the objective.
    held_numbers = {p.split("/")[-1].split(".")[0] for p in held_out}
    assert not any(r.split()[2] in held_numbers for r in seen["reports"] if len(r.split()) > 2)
