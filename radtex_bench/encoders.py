"""The shared encoder interface over torchvision backbones.

``encoder(images) -> [B, out_dim]`` pooled features; ``encoder.forward_features(images) -> [B, C, h, w]``
the spatial grid. The wrapped torchvision model keeps its classifier (frozen, never called) so that
``encoder.state_dict()`` has exactly torchvision's keys and loads into a plain
``torchvision.models.<name>()`` with ``strict=True``.

Radiographs are one-channel; the data pipeline repeats the grey channel to three and normalises with
the ImageNet statistics, so the standard stem and ImageNet weights apply unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import ConfigError, DataError, UserError
from .registry import Registry


@dataclass(frozen=True)
class EncoderInfo:
    name: str
    builder: Callable[[], nn.Module]
    head_attr: str  # torchvision's classifier attribute: kept for state-dict compatibility, never run
    out_dim: int
    stride: int = 32  # input size must be a multiple of this
    weights_enum: str = ""  # torchvision weights enum name for the `imagenet` objective


ENCODERS: Registry[EncoderInfo] = Registry("encoder")


def register_encoder(info: EncoderInfo) -> EncoderInfo:
    return ENCODERS.register(info.name)(info)


def _tv(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return getattr(torchvision.models, name)(weights=None)

    return build


for _name, _head, _dim, _weights in [
    ("resnet18", "fc", 512, "ResNet18_Weights"),
    ("resnet34", "fc", 512, "ResNet34_Weights"),
    ("resnet50", "fc", 2048, "ResNet50_Weights"),
    ("resnet101", "fc", 2048, "ResNet101_Weights"),
    ("densenet121", "classifier", 1024, "DenseNet121_Weights"),
]:
    register_encoder(EncoderInfo(_name, _tv(_name), _head, _dim, 32, _weights))


def check_image_size(name: str, image_size: int, where: str) -> None:
    info = ENCODERS.get(name)
    if image_size % info.stride:
        lower = image_size // info.stride * info.stride
        raise ConfigError(
            where,
            f"{image_size} is not a multiple of {info.stride}, which {name} needs; use "
            f"{max(lower, info.stride)} or {lower + info.stride}",
        )


class Encoder(nn.Module):
    """A torchvision backbone exposing pooled features and the spatial grid."""

    def __init__(self, name: str):
        super().__init__()
        self.info = ENCODERS.get(name)
        self.name = name
        self.model = self.info.builder()
        self.out_dim = self.info.out_dim
        # The classifier is never used; freezing it keeps DDP from waiting for its gradients.
        for p in getattr(self.model, self.info.head_attr).parameters():
            p.requires_grad_(False)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        m = self.model
        if self.name.startswith("resnet"):
            x = m.maxpool(m.relu(m.bn1(m.conv1(images))))  # [B, 64, H/4, W/4]
            x = m.layer4(m.layer3(m.layer2(m.layer1(x))))  # [B, C, H/32, W/32]
            return x
        if self.name.startswith("densenet"):
            return torch.relu(m.features(images))  # [B, C, H/32, W/32]
        raise NotImplementedError(self.name)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        grid = self.forward_features(images)  # [B, C, h, w]
        return grid.mean(dim=(2, 3))  # [B, C]

    # -- torchvision-compatible weights ------------------------------------------------------------

    def torchvision_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}

    def load_torchvision_state_dict(self, state: dict[str, torch.Tensor], strict: bool = True) -> None:
        head = self.info.head_attr + "."
        if not any(k.startswith(head) for k in state):
            # Weights exported without a classifier (or with another head size): keep ours.
            state = {**{k: v for k, v in self.model.state_dict().items() if k.startswith(head)}, **state}
        else:
            own = self.model.state_dict()
            state = {
                k: (own[k] if k.startswith(head) and v.shape != own[k].shape else v) for k, v in state.items()
            }
        self.model.load_state_dict(state, strict=strict)


def build_encoder(name: str) -> Encoder:
    return Encoder(name)


def save_encoder(encoder: Encoder, path: Path, metadata: dict[str, str] | None = None) -> str:
    """Write ``encoder.safetensors`` atomically; return the SHA-256 of the file."""
    from safetensors.torch import save_file

    from .io import atomic_path

    meta = {"encoder": encoder.name, "format": "torchvision", **(metadata or {})}
    with atomic_path(path) as tmp:
        save_file(encoder.torchvision_state_dict(), str(tmp), metadata=meta)
    return file_sha256(path)


def load_encoder(path: Path, name: str | None = None) -> Encoder:
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.exists():
        raise DataError(f"encoder weights not found: {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    name = name or meta.get("encoder")
    if not name:
        raise UserError(f"{path}: no encoder name in the metadata; pass the encoder name explicitly")
    encoder = Encoder(name)
    encoder.load_torchvision_state_dict(load_file(str(path)))
    return encoder


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
