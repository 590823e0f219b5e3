"""Frozen features: one extraction pass per encoder, cached on disk and keyed by the weights' hash."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data.pipeline import PixelSource, RadiographDataset, collate, to_model_input
from ..data.table import ImageTable
from ..encoders import Encoder
from ..io import atomic_path
from ..ui import progress

log = logging.getLogger("radtex_bench")


def table_fingerprint(table: ImageTable, image_size: int, cache: str | None) -> str:
    """Identifies the images a feature matrix was computed on (ids, order, size, pixel source)."""
    digest = hashlib.sha256(f"{image_size}|{cache or ''}|".encode())
    for image_id in table.image_ids:
        digest.update(image_id.encode())
        digest.update(b"\0")
    return digest.hexdigest()


@torch.no_grad()
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
    dataset = RadiographDataset(PixelSource(table, image_size, cache), needs=["image"])
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
    )
    out = np.empty((len(table), encoder.out_dim), dtype=np.float32)
    amp = device.type == "cuda"
    with progress() as bar:
        task = bar.add_task(description, total=len(table), info="")
        for batch in loader:
            images = to_model_input(batch["image"], device, channels_last=device.type == "cuda")
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                feats = encoder(images)  # [B, D]
            out[batch["index"].numpy()] = feats.float().cpu().numpy()
            bar.advance(task, len(batch["index"]))
    return out


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
            np.savez(f, features=features, weights=weights_hash, fingerprint=fingerprint)
    return features
