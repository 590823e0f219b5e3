"""``imagenet``: torchvision's ImageNet-supervised weights for the recipe's encoder; no pretraining run.

Weights come from torchvision's weights API and are never downloaded at run time: the file must
already be in ``$TORCH_HOME/hub/checkpoints`` (torch's own cache), else the run stops before any work
with an error naming the file and the folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from .base import Objective, SetupContext, register_objective


def imagenet_weights_file(encoder_name: str, weights: str = "DEFAULT") -> tuple[Path, str]:
    """(where the checkpoint must be, the URL it is published at) for an encoder's ImageNet weights."""
    import torchvision

    from ..encoders import ENCODERS

    info = ENCODERS.get(encoder_name)
    if not info.weights_enum:
        raise UserError(
            f"encoder '{encoder_name}' has no ImageNet weights in torchvision; drop the imagenet objective"
        )
    enum = getattr(torchvision.models, info.weights_enum)
    try:
        entry = enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except KeyError:
        raise UserError(
            f"imagenet weights '{weights}' do not exist for {encoder_name}; choose one of "
            f"{', '.join(['DEFAULT', *enum.__members__])}"
        ) from None
    url = entry.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1], url


@register_objective("imagenet")
class ImageNetInit(Objective):
    needs: set[str] = set()
    pretrains = False

    def __init__(self, encoder: nn.Module, weights: str = "DEFAULT"):
        super().__init__(encoder)
        self.weights = weights

    @classmethod
    def preflight(cls, encoder_name: str, params: dict[str, Any]) -> None:
        path, url = imagenet_weights_file(encoder_name, params.get("weights", "DEFAULT"))
        if not path.is_file():
            raise UserError(
                f"objective imagenet: ImageNet weights for {encoder_name} are not available offline; download "
                f"{path.name} ({url}) and place it in {path.parent} (the $TORCH_HOME/hub/checkpoints folder), "
                "or drop the imagenet objective"
            )

    def setup(self, context: SetupContext) -> None:
        self.preflight(self.encoder.name, {"weights": self.weights})
        path, _ = imagenet_weights_file(self.encoder.name, self.weights)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UserError(
                f"cannot load ImageNet weights {path}: {type(exc).__name__}: {exc}; download the file again"
            ) from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        try:
            self.encoder.load_torchvision_state_dict(state)
        except RuntimeError as exc:
            raise UserError(
                f"{path} does not hold {self.encoder.name} weights ({str(exc).splitlines()[0]}); "
                "download the right file"
            ) from None

    def forward(self, batch):  # pragma: no cover - never trained
        raise RuntimeError("the imagenet objective is not trained")
