"""The training/evaluation data pipeline: an image table -> batches for objectives and probes.

Workers produce uint8 pixels (cheap to move, pinned); conversion to float, channel repetition and
ImageNet normalisation happen on the training device in :func:`to_model_input`.

Randomness never comes from worker state: the sampler yields ``(epoch, index)`` keys, the order of an
epoch is a permutation seeded by (seed, epoch), and each view's augmentation is seeded by
(seed, epoch, index). A run therefore resumes mid-epoch exactly, with any number of workers.

Augmented views are made in one of two places. On the CPU (and for plug-ins) each worker runs the
objective's per-image ``view_transform`` on uint8 pixels. When training on CUDA, an objective that offers a
:class:`ViewAugment` has the workers draw only each view's random parameters (a few floats, seeded the same
way) and the pixels are warped in one batched pass on the GPU, where workers would otherwise be the
bottleneck.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from ..errors import DataError
from .images import load_square, square
from .table import ImageTable

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


@dataclass(frozen=True)
class ViewAugment:
    """Batched X-ray view augmentation: per-view random parameters + one warp of the whole batch.

    The same recipe as :func:`radtex_bench.objectives.simclr.xray_view_transform` (random resized crop,
    rotation with black corners, brightness then contrast, optional Gaussian blur, optional horizontal
    flip), split so that the random draw (:meth:`sample`, cheap, in the loader workers, seeded per
    (seed, epoch, index)) is apart from the pixel work (:meth:`__call__`, on the training device).
    Not bit-identical to the torchvision path (one bilinear warp, continuous crop boxes, one final
    rounding), but the same distribution of views.
    """

    size: int
    crop_scale: tuple[float, float] = (0.6, 1.0)
    ratio: tuple[float, float] = (0.85, 1.15)
    rotation: float = 10.0
    brightness: float = 0.3
    contrast: float = 0.3
    blur_probability: float = 0.3
    horizontal_flip: bool = False

    #: Parameter vector: crop centre x, y and half-size x, y (normalised source coordinates), rotation
    #: (radians), flip (+1 / -1), brightness factor, contrast factor, blur sigma (0 = none).
    N_PARAMS = 9

    @property
    def kernel_size(self) -> int:
        return max(3, (self.size // 16) | 1)  # odd, ~6% of the image side, as on the CPU path

    def _crop(self, rng: np.random.Generator) -> tuple[float, float, float, float]:
        """torchvision's RandomResizedCrop draw, in fractions of the source side (10 tries, then clamp)."""
        log_ratio = np.log(self.ratio)
        for _ in range(10):
            area = rng.uniform(*self.crop_scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            w, h = math.sqrt(area * aspect), math.sqrt(area / aspect)
            if w <= 1.0 and h <= 1.0:
                break
        w, h = min(w, 1.0), min(h, 1.0)
        x0, y0 = rng.uniform(0.0, 1.0 - w), rng.uniform(0.0, 1.0 - h)
        return 2 * x0 + w - 1, 2 * y0 + h - 1, w, h

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One view's parameters ``[N_PARAMS]`` float32."""
        cx, cy, sx, sy = self._crop(rng)
        angle = math.radians(rng.uniform(-self.rotation, self.rotation))
        flip = -1.0 if self.horizontal_flip and rng.random() < 0.5 else 1.0
        bright = rng.uniform(max(0.0, 1 - self.brightness), 1 + self.brightness)
        contrast = rng.uniform(max(0.0, 1 - self.contrast), 1 + self.contrast)
        sigma = rng.uniform(0.1, 1.5) if rng.random() < self.blur_probability else 0.0
        return np.array([cx, cy, sx, sy, angle, flip, bright, contrast, sigma], dtype=np.float32)

    def __call__(self, pixels: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, 1, H, W]`` + ``[B, N_PARAMS]`` -> uint8 ``[B, 1, size, size]`` on the same device."""
        params = params.to(device=pixels.device, dtype=torch.float32)
        x = self._warp(pixels.float(), params)  # [B, 1, S, S] in 0..255
        bright, contrast = params[:, 6].view(-1, 1, 1, 1), params[:, 7].view(-1, 1, 1, 1)
        x = (x * bright).clamp_(0.0, 255.0)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)  # [B, 1, 1, 1]
        x = ((x - mean) * contrast + mean).clamp_(0.0, 255.0)
        x = self._blur(x, params[:, 8])
        return x.round_().clamp_(0.0, 255.0).to(torch.uint8)

    def _warp(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Crop + rotate (about the crop centre) + flip + resize in one bilinear ``grid_sample``."""
        b = x.shape[0]
        cx, cy, sx, sy, angle, flip = params[:, :6].unbind(1)  # [B] each
        cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
        # Output coordinates u -> rotated and flipped v = R F u -> source x = centre + diag(sx, sy) v.
        rotate = torch.stack(
            [torch.stack([cos * flip, -sin, zero], -1), torch.stack([sin * flip, cos, zero], -1)], 1
        )  # [B, 2, 3]
        theta = torch.stack(
            [
                torch.stack([sx * cos * flip, -sx * sin, cx], -1),
                torch.stack([sy * sin * flip, sy * cos, cy], -1),
            ],
            1,
        )  # [B, 2, 3]
        shape = [b, 1, self.size, self.size]
        grid = F.affine_grid(theta, shape, align_corners=False)  # [B, S, S, 2]
        # border: a crop touching the image edge samples half a pixel beyond it, which must not darken
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        # Rotation after the crop leaves black corners on the CPU path: mask what falls outside the crop.
        inside = F.affine_grid(rotate, shape, align_corners=False).abs().amax(-1) <= 1.0  # [B, S, S]
        return out * inside[:, None]

    def _blur(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian blur with a per-image sigma (sigma 0 -> identity), reflect padding."""
        if self.blur_probability <= 0:
            return x
        b, _, h, w = x.shape
        k = self.kernel_size
        offsets = torch.arange(k, device=x.device, dtype=torch.float32) - k // 2  # [k]
        safe = sigma.clamp(min=1e-3)[:, None]  # [B, 1]
        kernel = torch.exp(-0.5 * (offsets[None] / safe) ** 2)  # [B, k]
        identity = (offsets == 0).float()[None].expand(b, k)
        kernel = torch.where((sigma > 0)[:, None], kernel / kernel.sum(1, keepdim=True), identity)
        y = F.pad(
            x.view(1, b, h, w), (k // 2, k // 2, k // 2, k // 2), mode="reflect"
        )  # [1, B, H+k-1, W+k-1]
        y = F.conv2d(y, kernel.view(b, 1, 1, k), groups=b)  # horizontal
        y = F.conv2d(y, kernel.view(b, 1, k, 1), groups=b)  # vertical
        return y.view(b, 1, h, w)


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


@functools.lru_cache(maxsize=8)
def _normalisation(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``x * scale + shift`` == ``(x / 255 - mean) / std``, built once per device.

    Cached because building a tensor from Python numbers on a GPU is a blocking copy: once per step it
    would stall the host behind the GPU.
    """
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)
    scale, shift = 1.0 / (255.0 * std), -mean / std
    return scale.view(1, 3, 1, 1).to(device), shift.view(1, 3, 1, 1).to(device)


def to_model_input(
    pixels: torch.Tensor, device: torch.device | str | None = None, channels_last: bool = False
) -> torch.Tensor:
    """uint8 ``[B, 1, S, S]`` -> float ``[B, 3, S, S]`` normalised with ImageNet statistics."""
    x = pixels.to(device, non_blocking=True) if device is not None else pixels
    scale, shift = _normalisation(x.device)
    x = torch.addcmul(shift, x.float(), scale)  # [B, 3, S, S]: the grey channel broadcast to three
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x
