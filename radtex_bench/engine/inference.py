"""The one inference loop: images of a table through a model, in table order, under the precision rule.

Feature extraction (every frozen-encoder protocol) and the fine-tuning protocol's predictions both run
through :func:`predict`, so batching, pixel sources, memory format, autocast and the encoder's input
normalisation are the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data.normalization import IMAGENET, Normalization, input_normalization
from ..data.pipeline import PixelSource, RadiographDataset, collate, to_model_input
from ..data.table import ImageTable
from ..ui import progress
from .precision import autocast


def image_batches(
    table: ImageTable,
    image_size: int,
    device: torch.device,
    batch_size: int = 128,
    cache: str | None = None,
    workers: int = 0,
    normalization: Normalization = IMAGENET,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """``(rows [B], images [B, 3, S, S])`` of every image of ``table``, in order, normalised on ``device``
    with the encoder's ``normalization``."""
    dataset = RadiographDataset(PixelSource(table, image_size, cache), needs=["image"])
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
    )
    for batch in loader:
        images = to_model_input(batch["image"], device, device.type == "cuda", normalization)
        yield batch["index"].numpy(), images


@torch.no_grad()
def predict(
    model: Callable[[torch.Tensor], torch.Tensor],
    out_dim: int,
    table: ImageTable,
    image_size: int,
    device: torch.device,
    batch_size: int = 128,
    cache: str | None = None,
    workers: int = 0,
    description: str | None = None,
    normalization: Normalization | None = None,
) -> np.ndarray:
    """``model(images)`` for every image of ``table``: float32 ``[N, out_dim]`` in table order.

    ``model`` must already be on ``device`` and in eval mode. ``description`` shows a progress bar.
    Images get ``normalization``, by default the model's own or its ``encoder``'s
    (:func:`~radtex_bench.data.normalization.input_normalization`).
    """
    normalization = normalization or input_normalization(model)
    out = np.empty((len(table), out_dim), dtype=np.float32)
    with progress(description is not None) as bar:
        task = bar.add_task(description or "", total=len(table), info="")
        batches = image_batches(table, image_size, device, batch_size, cache, workers, normalization)
        for rows, images in batches:
            with autocast(device):
                values = model(images)  # [B, out_dim]
            out[rows] = values.float().cpu().numpy()
            bar.advance(task, len(rows))
    return out
