"""The training/evaluation data pipeline: an image table -> batches for objectives and probes.

Workers produce uint8 pixels (cheap to move, pinned); conversion to float, channel repetition and
the encoder's input normalisation (ImageNet by default, :mod:`radtex_bench.data.normalization`) happen on
the training device in :func:`to_model_input`.

Randomness never comes from worker state: the sampler yields ``(epoch, index)`` keys, the order of an
epoch is a permutation seeded by (seed, epoch), and each view's augmentation is seeded by
(seed, epoch, index). A run therefore resumes mid-epoch exactly, with any number of workers.

Augmented views are made in one of two places (both defined in :mod:`radtex_bench.data.augment`). On
the CPU (and for plug-ins) each worker runs the objective's per-image ``view_transform`` on uint8 pixels.
When training on CUDA, an objective that offers a :class:`~radtex_bench.data.augment.ViewAugment` has the
workers draw only each view's random parameters (a few floats, seeded the same way) and the pixels are
warped in one batched pass on the GPU, where workers would otherwise be the bottleneck.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..errors import DataError
from .augment import ViewAugment
from .images import load_square, square
from .normalization import IMAGENET, Normalization
from .table import ImageTable


class PixelSource:
    """uint8 ``[S, S]`` pixels for row ``i`` of a table, from the files or from a ``prepare`` cache."""

    def __init__(self, table: ImageTable, size: int, cache: str | Path | None = None):
        self.size = size
        self.paths = table.frame["path"].tolist()
        self.cache = None
        self.rows: np.ndarray | None = None
        self.cache_dir = Path(cache) if cache else None
        self.image_ids = table.image_ids if cache else None

    def _open_cache(self) -> None:
        # Opened lazily so that each worker process maps the file itself.
        from .cache import PixelCache

        self.cache = PixelCache.open(self.cache_dir)
        self.rows = np.array([self.cache.row(i) for i in self.image_ids], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def __call__(self, i: int) -> np.ndarray:
        if self.cache_dir is None:
            return load_square(self.paths[i], self.size)
        if self.cache is None:
            self._open_cache()
        pixels = self.cache.pixels(int(self.rows[i]))
        return pixels if pixels.shape[0] == self.size else square(np.asarray(pixels), self.size)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["cache"] = None  # memory maps are re-opened in each worker
        state["rows"] = None
        return state


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index, 0xA06]).generate_state(1)[0])


class RadiographDataset(Dataset):
    """Items are dicts with the keys an objective ``needs`` plus ``index``.

    ``image``: uint8 ``[1, S, S]``; ``views``: list of uint8 ``[1, S, S]``; ``report``: str;
    ``labels``: float32 ``[P]`` (NaN = missing). With ``view_augment`` (the batched device path), items
    hold ``image`` and ``view_params`` float32 ``[n_views, ViewAugment.N_PARAMS]`` instead of ``views``;
    the trainer makes the views on its device.
    """

    def __init__(
        self,
        source: PixelSource,
        needs: Sequence[str] = ("image",),
        reports: Sequence[str] | None = None,
        labels: np.ndarray | None = None,
        view_transform: Callable | None = None,
        n_views: int = 2,
        seed: int = 0,
        view_augment: ViewAugment | None = None,
    ):
        self.source = source
        self.view_augment = view_augment
        self.needs = set(needs)
        self.reports = list(reports) if reports is not None else None
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels, dtype=np.float32))
        self.view_transform = view_transform
        self.n_views = n_views
        self.seed = seed
        if "views" in self.needs and view_transform is None and view_augment is None:
            raise ValueError("an objective that needs views must provide view_transform()")

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        pixels = torch.from_numpy(np.require(self.source(index), np.uint8, ["C", "W"]))[
            None
        ]  # [1, S, S] uint8
        item: dict[str, Any] = {"index": index}
        if "image" in self.needs or "views" not in self.needs or self.view_augment is not None:
            item["image"] = pixels
        if "views" in self.needs and self.view_augment is not None:
            rng = np.random.default_rng(sample_seed(self.seed, epoch, index))
            params = [self.view_augment.sample(rng) for _ in range(self.n_views)]
            item["view_params"] = torch.from_numpy(np.stack(params))  # [n_views, N_PARAMS]
        elif "views" in self.needs:
            # fork_rng keeps the trainer's own RNG untouched when loading runs in the main process.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(sample_seed(self.seed, epoch, index))
                item["views"] = [self.view_transform(pixels) for _ in range(self.n_views)]
        if "report" in self.needs:
            item["report"] = self.reports[index] if self.reports is not None else ""
        if "labels" in self.needs:
            item["labels"] = self.labels[index]
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"index": torch.tensor([it["index"] for it in items], dtype=torch.long)}
    if "image" in items[0]:
        out["image"] = torch.stack([it["image"] for it in items])  # [B, 1, S, S] uint8
    if "views" in items[0]:
        out["views"] = [torch.stack([it["views"][v] for it in items]) for v in range(len(items[0]["views"]))]
    if "view_params" in items[0]:
        out["view_params"] = torch.stack([it["view_params"] for it in items])  # [B, n_views, N_PARAMS]
    if "report" in items[0]:
        out["report"] = [it["report"] for it in items]
    if "labels" in items[0]:
        out["labels"] = torch.stack([it["labels"] for it in items])
    return out


@dataclass
class EpochBatchSampler(Sampler):
    """Deterministic shuffled batches of ``(epoch, index)`` keys, sharded across ranks.

    Each rank takes every ``world_size``-th batch-slice of the same global permutation, so the union
    of one step's batches over ranks equals one global batch of ``batch_size * world_size``.
    """

    n: int
    batch_size: int
    seed: int
    epoch: int = 0
    start_batch: int = 0
    stop_batch: int | None = None
    rank: int = 0
    world_size: int = 1
    shuffle: bool = True

    def __post_init__(self) -> None:
        if self.batches_per_epoch == 0:
            raise DataError(
                f"{self.n} pretraining images cannot fill one batch of {self.batch_size} per process "
                f"x {self.world_size} processes; lower train.batch_size"
            )

    @property
    def batches_per_epoch(self) -> int:
        return self.n // (self.batch_size * self.world_size)  # drop_last: every step sees full batches

    def _stop(self) -> int:
        return (
            self.batches_per_epoch
            if self.stop_batch is None
            else min(self.stop_batch, self.batches_per_epoch)
        )

    def __len__(self) -> int:
        return max(0, self._stop() - self.start_batch)

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, 0x5A3]))
        return rng.permutation(self.n)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.order(self.epoch)
        global_batch = self.batch_size * self.world_size
        for b in range(self.start_batch, self._stop()):
            chunk = order[b * global_batch : (b + 1) * global_batch]
            mine = chunk[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
            yield [(self.epoch, int(i)) for i in mine]


@functools.lru_cache(maxsize=16)
def _normalisation(normalization: Normalization, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``x * scale + shift`` == ``(x / 255 - mean) / std``, built once per (normalisation, device).

    Cached because building a tensor from Python numbers on a GPU is a blocking copy: once per step it
    would stall the host behind the GPU.
    """
    std = torch.tensor(normalization.std, dtype=torch.float32)
    mean = torch.tensor(normalization.mean, dtype=torch.float32)
    scale, shift = 1.0 / (255.0 * std), -mean / std
    return scale.view(1, 3, 1, 1).to(device), shift.view(1, 3, 1, 1).to(device)


def to_model_input(
    pixels: torch.Tensor,
    device: torch.device | str | None = None,
    channels_last: bool = False,
    normalization: Normalization = IMAGENET,
) -> torch.Tensor:
    """uint8 ``[B, 1, S, S]`` -> float ``[B, 3, S, S]`` normalised with the encoder's statistics
    (``normalization``; ImageNet by default)."""
    x = pixels.to(device, non_blocking=True) if device is not None else pixels
    scale, shift = _normalisation(normalization, x.device)
    x = torch.addcmul(shift, x.float(), scale)  # [B, 3, S, S]: the grey channel broadcast to three
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x
