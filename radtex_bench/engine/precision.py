"""Mixed precision: one rule for training and inference.

``auto`` is bf16 autocast on CUDA (fp16 where the GPU has no bf16) and fp32 on the CPU, where autocast
would only slow things down. The trainer, feature extraction and every evaluation protocol use this
rule, so an encoder is evaluated in the precision it was trained in.
"""

from __future__ import annotations

import contextlib

import torch


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (``auto`` | ``fp32`` | ``bf16`` | ``fp16``) on ``device``; None = fp32."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or device.type == "cuda":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    return None


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """``torch.autocast`` under :func:`autocast_dtype`'s rule (a no-op context for fp32)."""
    dtype = autocast_dtype(precision, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
