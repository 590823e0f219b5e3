"""An encoder's input normalisation: which per-channel mean and standard deviation its pixels get.

Pixels are uint8 radiographs; the model sees ``(x / 255 - mean) / std`` on three channels (the grey
channel repeated). Every encoder carries its own normalisation, stored in the metadata of its
``encoder.safetensors`` and applied by the trainer, feature extraction and every protocol, so a published
encoder is fed what it was trained on:

* ``imagenet`` (the default): torchvision's ImageNet statistics, mean (0.485, 0.456, 0.406), std
  (0.229, 0.224, 0.225);
* ``xrv``: torchxrayvision's scaling of pixels to [-1024, 1024] (``(2 x / 255 - 1) * 1024``, Cohen et
  al. 2022), written as mean 0.5 and std 1/2048;
* any ``{mean: [...], std: [...]}`` in [0, 1] pixel units (one value applies to all three channels).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import ConfigError
from ..schema import option

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``mean`` and ``std`` in [0, 1] pixel units; one number applies to all three channels."""

    #: How a recipe writes it (:func:`radtex_bench.schema.range_text`): a preset name or ``{mean, std}``.
    RANGE_TEXT: ClassVar[str] = "imagenet | xrv or mapping"

    # Bounded by 1 so that statistics written in 0-255 units (123.675, 58.395) are refused, not used.
    mean: tuple[float, ...] = option(
        ge=0.0, le=1.0, help="per-channel mean in [0, 1] pixel units (1 or 3 numbers)"
    )
    std: tuple[float, ...] = option(
        gt=0.0, le=1.0, help="per-channel standard deviation in [0, 1] pixel units (1 or 3 numbers, > 0)"
    )

    def __post_init__(self) -> None:
        for key in ("mean", "std"):
            values = tuple(float(v) for v in getattr(self, key))
            if len(values) not in (1, 3):
                raise ConfigError(key, f"expected 1 or 3 numbers (one per channel), got {len(values)}")
            object.__setattr__(self, key, values * 3 if len(values) == 1 else values)
        if min(self.std) <= 0:
            raise ConfigError("std", f"must be > 0, got {min(self.std)}")

    @property
    def name(self) -> str:
        """``imagenet``, ``xrv`` or ``custom``."""
        return next((name for name, n in PRESETS.items() if n == self), "custom")

    @classmethod
    def parse(cls, value: Any, where: str = "normalization") -> Normalization:
        """``"imagenet"``, ``"xrv"``, ``{mean: [...], std: [...]}`` or a :class:`Normalization`."""
        if isinstance(value, Normalization):
            return value
        if isinstance(value, str):
            if value not in PRESETS:
                raise ConfigError(
                    where,
                    f"unknown normalisation {value!r}; use imagenet, xrv or {{mean: [...], std: [...]}}",
                )
            return PRESETS[value]
        from ..schema import build

        return build(cls, value, where)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, exact floats): what the weights' metadata holds."""
        return json.dumps({"mean": list(self.mean), "name": self.name, "std": list(self.std)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Normalization:
        data = json.loads(text)
        return cls(tuple(data["mean"]), tuple(data["std"]))

    @classmethod
    def from_plain(cls, value: Any, where: str = "normalization") -> Normalization:
        """The recipe form (what :mod:`radtex_bench.schema` calls for a parameter of this type)."""
        return cls.parse(value, where)

    def to_plain(self) -> str | dict[str, list[float]]:
        """``imagenet`` / ``xrv`` for a preset, else ``{mean, std}``: the recipe form."""
        name = self.name
        return name if name != "custom" else {"mean": list(self.mean), "std": list(self.std)}


IMAGENET = Normalization(IMAGENET_MEAN, IMAGENET_STD)
#: torchxrayvision: ``(2 * x / 255 - 1) * 1024`` == ``(x / 255 - 0.5) / (1 / 2048)``; 1/2048 is exact in binary.
XRV = Normalization((0.5,), (1.0 / 2048,))
PRESETS = {"imagenet": IMAGENET, "xrv": XRV}


def input_normalization(module: Any) -> Normalization:
    """The normalisation a model's images need: its own ``normalization``, else its encoder's, else
    ImageNet (a plug-in encoder without the attribute)."""
    for owner in (module, getattr(module, "encoder", None)):
        norm = getattr(owner, "normalization", None)
        if isinstance(norm, Normalization):
            return norm
    return IMAGENET
