"""``imagenet``: published ImageNet weights for the recipe's encoder; no pretraining run.

Weights are never downloaded at run time; they must already be in the local cache the encoder's family
reads, else the run stops before any work with an error naming the model, the file and the folder:

* torchvision encoders: torchvision's weights API, file in ``$TORCH_HOME/hub/checkpoints`` (torch's cache);
* timm encoders (``vit_*``, ``convnext_tiny``, ``efficientnet_b0``, ``timm:<model>``): timm's pretrained
  weights from the local Hugging Face cache (``HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``), read
  as a local file (never through the hub client); the encoder takes the weights' own mean/std
  (``vit_*`` augreg weights use 0.5/0.5).

``weights``: ``DEFAULT`` (torchvision's default enum, timm's default pretrained tag) or another enum
member / timm tag (``IMAGENET1K_V1``, ``augreg_in21k``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..encoders import ENCODERS, PretrainedWeights
from ..errors import UserError
from .base import Objective, SetupContext, register_objective


def imagenet_weights(encoder_name: str, weights: str = "DEFAULT") -> PretrainedWeights:
    """Where the encoder's ImageNet weights must be (a :class:`UserError` for unknown weights)."""
    spec = ENCODERS.get(encoder_name)
    return spec.family.pretrained_weights(spec, weights)


def imagenet_weights_file(encoder_name: str, weights: str = "DEFAULT") -> tuple[Path, str]:
    """(where the checkpoint must be, where it is published) for an encoder's ImageNet weights."""
    found = imagenet_weights(encoder_name, weights)
    return found.path, found.source


@register_objective("imagenet")
class ImageNetInit(Objective):
    needs: set[str] = set()
    pretrains = False

    def __init__(self, encoder: nn.Module, weights: str = "DEFAULT"):
        super().__init__(encoder)
        self.weights = weights

    @classmethod
    def preflight(cls, encoder_name: str, params: dict[str, Any]) -> None:
        found = imagenet_weights(encoder_name, params.get("weights", "DEFAULT"))
        if not found.path.is_file():
            model = f" ({found.model})" if found.model else ""
            raise UserError(
                f"objective imagenet: ImageNet weights for {encoder_name}{model} are not available offline; "
                f"{found.hint}, or drop the imagenet objective"
            )

    def setup(self, context: SetupContext) -> None:
        self.preflight(self.encoder.name, {"weights": self.weights})
        self.encoder.load_pretrained(imagenet_weights(self.encoder.name, self.weights))

    def forward(self, batch):  # pragma: no cover - never trained
        raise RuntimeError("the imagenet objective is not trained")
