"""X-ray view augmentation: one definition, two realisations.

:class:`XrayAugment` holds the settings (after Azizi et al. 2021 and Sowrirajan et al. 2021: a
conservative random resized crop, a small rotation, brightness/contrast jitter and blur; no horizontal
flip by default, since laterality carries meaning, and no colour jitter, since radiographs are grey).
It is realised either per image with torchvision transforms v2 (:meth:`XrayAugment.per_image`, run in the
loader workers) or batched on the training device (:meth:`XrayAugment.batched` -> :class:`ViewAugment`,
whose workers only draw each view's parameters). Objectives that need views (``simclr`` and the other
image-only methods) and the ``finetune`` evaluation protocol both use this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ParamError
from ..schema import Range

#: Ranges of the augmentation settings, for objectives' ``params`` (see :mod:`radtex_bench.schema`).
CropScale = Annotated[tuple[float, float], Range(gt=0.0, le=1.0)]
Degrees = Annotated[float, Range(ge=0.0, le=180.0)]
Jitter = Annotated[float, Range(ge=0.0, le=1.0)]


def check_crop_scale(params: dict[str, Any], key: str = "crop_scale") -> None:
    low, high = params[key]
    if low > high:
        raise ParamError(key, f"[{low}, {high}]: the lower bound must not exceed the upper one")


@dataclass(frozen=True)
class XrayAugment:
    """Settings of the radiograph view augmentation (ranges are checked by the caller's schema)."""

    crop_scale: tuple[float, float] = (0.6, 1.0)
    ratio: tuple[float, float] = (0.85, 1.15)
    rotation: float = 10.0  # degrees, uniform in [-rotation, rotation]
    brightness: float = 0.3  # factor uniform in [1 - b, 1 + b]
    contrast: float = 0.3
    blur_probability: float = 0.3
    horizontal_flip: bool = False

    def __post_init__(self) -> None:
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(
                f"crop_scale must be [low, high] with 0 < low <= high <= 1, got {list(self.crop_scale)}"
            )
        object.__setattr__(self, "crop_scale", (float(low), float(high)))
        object.__setattr__(self, "ratio", tuple(float(r) for r in self.ratio))

    def per_image(self, size: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """uint8 ``[1, H, W]`` -> uint8 ``[1, size, size]`` with torchvision transforms v2 (picklable)."""
        from torchvision.transforms import v2

        steps: list[Any] = [
            v2.RandomResizedCrop(size, scale=self.crop_scale, ratio=self.ratio, antialias=True),
            v2.RandomRotation(self.rotation),
            v2.ColorJitter(brightness=self.brightness, contrast=self.contrast),
            v2.RandomApply(
                [v2.GaussianBlur(blur_kernel_size(size), sigma=(0.1, 1.5))], p=self.blur_probability
            ),
        ]
        if self.horizontal_flip:
            steps.append(v2.RandomHorizontalFlip())
        return v2.Compose(steps)

    def batched(self, size: int) -> ViewAugment:
        """The same augmentation as one batched warp on the training device."""
        return ViewAugment(
            size,
            crop_scale=self.crop_scale,
            ratio=self.ratio,
            rotation=self.rotation,
            brightness=self.brightness,
            contrast=self.contrast,
            blur_probability=self.blur_probability,
            horizontal_flip=self.horizontal_flip,
        )


def blur_kernel_size(size: int) -> int:
    """Odd Gaussian kernel of about 6% of the image side (at least 3)."""
    return max(3, (size // 16) | 1)


#: Light augmentation of the ``finetune`` protocol: crop scale 0.85-1, rotation ±5°, brightness and
#: contrast 0.1, no blur, no flip (cited in docs/evaluation.md).
FINETUNE_AUGMENT = XrayAugment(
    crop_scale=(0.85, 1.0), rotation=5.0, brightness=0.1, contrast=0.1, blur_probability=0.0
)


@dataclass(frozen=True)
class ViewAugment:
    """Batched X-ray view augmentation: per-view random parameters + one warp of the whole batch.

    The same recipe as :meth:`XrayAugment.per_image` (random resized crop,
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
        return blur_kernel_size(self.size)  # as on the per-image path

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
