"""Image encoders: the registry, the built-in families (torchvision, timm) and the weights file.

``from radtex_bench.encoders import Encoder, build_encoder, load_encoder, save_encoder, ENCODERS`` is the
whole public surface; see :mod:`radtex_bench.encoders.base` for the plug-in API and docs/encoders.md for
the families, their pooled features and normalisations.
"""

from __future__ import annotations

from .base import (
    ENCODERS,
    Encoder,
    EncoderRegistry,
    EncoderSpec,
    PretrainedWeights,
    build_encoder,
    check_image_size,
    file_sha256,
    load_encoder,
    read_metadata,
    register_encoder,
    save_encoder,
)

# Built-ins register themselves on import; torchvision and timm themselves are imported only when a
# model is built, so listing names stays fast.
from . import timm, torchvision  # noqa: E402,F401  isort: skip

__all__ = [
    "ENCODERS",
    "Encoder",
    "EncoderRegistry",
    "EncoderSpec",
    "PretrainedWeights",
    "build_encoder",
    "check_image_size",
    "file_sha256",
    "load_encoder",
    "read_metadata",
    "register_encoder",
    "save_encoder",
]
