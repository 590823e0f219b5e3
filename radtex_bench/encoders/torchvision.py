"""torchvision CNNs: ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101``, ``densenet121``.

Grid: the last stage's feature map ``[B, C, H/32, W/32]`` (DenseNet: after its final ReLU). Pooled
feature: the grid's spatial mean (global average pooling, what torchvision's classifier reads).
``encoder.safetensors`` holds torchvision's keys and loads into ``torchvision.models.<name>()`` with
``strict=True``. ImageNet weights (the ``imagenet`` objective) come from torch's own cache,
``$TORCH_HOME/hub/checkpoints``, and are never downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..data.normalization import IMAGENET
from ..errors import UserError
from .base import Encoder, EncoderSpec, PretrainedWeights, register_encoder


class TorchvisionEncoder(Encoder):
    """A torchvision ResNet or DenseNet exposing the pooled feature and the spatial grid."""

    format = "torchvision"

    def build_model(self) -> nn.Module:
        import torchvision

        return getattr(torchvision.models, self.spec.model)(weights=None)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        m = self.model
        if self.spec.model.startswith("resnet"):
            x = m.maxpool(m.relu(m.bn1(m.conv1(images))))  # [B, 64, H/4, W/4]
            x = m.layer4(m.layer3(m.layer2(m.layer1(x))))  # [B, C, H/32, W/32]
            return x
        if self.spec.model.startswith("densenet"):
            return torch.relu(m.features(images))  # [B, C, H/32, W/32]
        raise NotImplementedError(self.spec.model)

    @classmethod
    def pretrained_weights(cls, spec: EncoderSpec, weights: str) -> PretrainedWeights:
        import torchvision

        if not spec.imagenet_weights:
            return super().pretrained_weights(spec, weights)
        enum = getattr(torchvision.models, spec.imagenet_weights)
        try:
            entry = enum[weights] if weights != "DEFAULT" else enum.DEFAULT
        except KeyError:
            raise UserError(
                f"imagenet weights '{weights}' do not exist for {spec.name}; choose one of "
                f"{', '.join(['DEFAULT', *enum.__members__])}"
            ) from None
        url = entry.url
        path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        hint = f"download {path.name} ({url}) and place it in {path.parent} (the $TORCH_HOME/hub/checkpoints folder)"
        return PretrainedWeights(path, url, hint)

    def load_pretrained(self, weights: PretrainedWeights) -> None:
        try:
            state = torch.load(weights.path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UserError(
                f"cannot load ImageNet weights {weights.path}: {type(exc).__name__}: {exc}; download the file again"
            ) from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        try:
            self.load_export_state_dict(state)
        except RuntimeError as exc:
            raise UserError(
                f"{weights.path} does not hold {self.name} weights ({str(exc).splitlines()[0]}); "
                "download the right file"
            ) from None
        self.normalization = IMAGENET


for _name, _head, _dim, _weights in [
    ("resnet18", "fc", 512, "ResNet18_Weights"),
    ("resnet34", "fc", 512, "ResNet34_Weights"),
    ("resnet50", "fc", 2048, "ResNet50_Weights"),
    ("resnet101", "fc", 2048, "ResNet101_Weights"),
    ("densenet121", "classifier", 1024, "DenseNet121_Weights"),
]:
    register_encoder(
        EncoderSpec(
            _name,
            TorchvisionEncoder,
            model=_name,
            out_dim=_dim,
            stride=32,
            classifier=(_head,),
            imagenet_weights=_weights,
            description="torchvision CNN; pooled: spatial mean of the last feature map",
        )
    )
