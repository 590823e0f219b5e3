import pytest
import torch
import torchvision
from safetensors.torch import load_file

from radtex_bench.encoders import ENCODERS, Encoder, load_encoder, save_encoder


def test_pooled_and_grid_shapes():
    enc = Encoder("resnet18").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        grid = enc.forward_features(x)
        pooled = enc(x)
    assert grid.shape == (2, 512, 2, 2)
    assert pooled.shape == (2, enc.out_dim) == (2, 512)
    assert torch.allclose(pooled, grid.mean(dim=(2, 3)))


def test_pooled_features_match_torchvision_backbone():
    enc = Encoder("resnet18").eval()
    tv = torchvision.models.resnet18()
    tv.load_state_dict(enc.torchvision_state_dict())
    tv.fc = torch.nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(enc(x), tv.eval()(x), atol=1e-5)


def test_safetensors_loads_into_plain_torchvision(tmp_path):
    enc = Encoder("resnet18")
    with torch.no_grad():
        enc.model.layer1[0].conv1.weight.add_(1.0)  # make the weights distinguishable from a fresh init
    path = tmp_path / "encoder.safetensors"
    digest = save_encoder(enc, path, {"label": "x"})
    assert len(digest) == 64
    plain = torchvision.models.resnet18()
    plain.load_state_dict(load_file(str(path)), strict=True)
    assert torch.equal(plain.layer1[0].conv1.weight, enc.model.layer1[0].conv1.weight)
    again = load_encoder(path)
    assert again.name == "resnet18"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(again.eval()(x), enc.eval()(x))


def test_classifier_is_frozen_so_ddp_sees_no_unused_parameters():
    enc = Encoder("resnet18")
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert not any(n.startswith("model.fc.") for n in trainable)
    assert "model.conv1.weight" in trainable


@pytest.mark.parametrize("name, dim", [("resnet50", 2048), ("densenet121", 1024)])
def test_other_backbones(name, dim):
    enc = Encoder(name).eval()
    with torch.no_grad():
        assert enc(torch.randn(1, 3, 64, 64)).shape == (1, dim)
    assert ENCODERS.get(name).out_dim == dim
