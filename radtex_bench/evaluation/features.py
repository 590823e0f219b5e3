"""Frozen features: one extraction pass per encoder, cached on disk and keyed by the weights' hash."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch

from ..data.table import ImageTable
from ..encoders import Encoder
from ..engine.inference import predict
from ..io import atomic_path, save_npz

log = logging.getLogger("radtex_bench")


def table_fingerprint(table: ImageTable, image_size: int, cache: str | None) -> str:
    """Identifies the images a feature matrix was computed on (ids, order, size, pixel source)."""
    digest = hashlib.sha256(f"{image_size}|{cache or ''}|".encode())
    for image_id in table.image_ids:
        digest.update(image_id.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def extract_features(
    encoder: Encoder,
    table: ImageTable,
    image_size: int,
    device: torch.device,
    batch_size: int = 128,
    cache: str | None = None,
    workers: int = 0,
    description: str = "features",
) -> np.ndarray:
    """Pooled encoder features ``[N, D]`` (float32) of every image of ``table``, in table order."""
    encoder = encoder.to(device).eval()
    if device.type == "cuda":
        encoder.to(memory_format=torch.channels_last)
    return predict(
        encoder, encoder.out_dim, table, image_size, device, batch_size, cache, workers, description
    )


def cached_features(path: Path, weights_hash: str, fingerprint: str, compute) -> np.ndarray:
    """Load ``path`` if it was computed from the same weights and images, else compute and save it."""
    if path.exists():
        try:
            with np.load(path) as data:
                if str(data["weights"]) == weights_hash and str(data["fingerprint"]) == fingerprint:
                    log.info("features reused from %s", path)
                    return data["features"]
        except Exception:
            log.warning("feature cache %s is unreadable; recomputing", path)
    features = compute()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            save_npz(f, features=features, weights=weights_hash, fingerprint=fingerprint)
    return features
