"""Rendering a chunk of studies to uint8 images: paint the attenuation map, then expose it.

The map (anatomy, findings, devices) goes through a film curve, then each image is normalised to a
random mean and contrast (so no label can be read off mean intensity), and gets noise and blur.
"""

from __future__ import annotations

import numpy as np

from .anatomy import paint_body, paint_bones, paint_lungs, paint_mediastinum, paint_vessels
from .canvas import Canvas
from .devices import paint_devices
from .findings import paint_findings
from .model import Study


def render(studies: list[Study], size: int, seed: int) -> np.ndarray:
    """uint8 images [B, size, size] for a chunk of studies."""
    c = _paint(studies, size, seed)
    out = np.empty((c.B, size, size), np.uint8)
    start = 0
    for part in c.parts():
        out[start : start + part.B] = _expose(part)
        start += part.B
    return out


def _paint(studies: list[Study], size: int, seed: int) -> Canvas:
    """The canvas with its attenuation map ``A`` fully painted (anatomy, findings, devices, tilt)."""
    c = Canvas(studies, size, seed)
    for part in c.parts():
        paint_body(part)
        occupied = paint_mediastinum(part)
        paint_lungs(part, occupied)
        paint_bones(part)
    paint_findings(c, studies)
    paint_devices(c, studies)
    for part in c.parts():
        paint_vessels(part)
    _tilt(c)
    return c


def _tilt(c: Canvas) -> None:
    """The patient's small rotation, as a sub-pixel horizontal shift of each row (a shear); one
    flat gather over the whole chunk."""
    n = c.size
    shift = (c.p["rot"] * c.p["scale"] * (n / 2.0)) * c.Y  # pixels, per row
    k = np.floor(shift)
    f = shift - k
    j = np.clip(np.arange(n, dtype=np.int32)[None, None, :] + k.astype(np.int32), 0, n - 1)
    j += (np.arange(c.B * n, dtype=np.int32) * n).reshape(c.B, n, 1)
    a0 = c.A.reshape(-1)[j]
    a1 = np.empty_like(a0)
    a1[..., :-1] = a0[..., 1:]
    a1[..., -1] = a0[..., -1]
    c.A[...] = a0 + f * (a1 - a0)


def _expose(c: Canvas) -> np.ndarray:
    """Film curve, tone, shading, a random window per image, noise, blur -> uint8."""
    p = c.p
    a = np.maximum(c.A, 0.0)
    img = 1.0 - 1.0 / (1.0 + a * (1.3 + 0.85 * a))  # film curve ~ 1 - exp(-1.3 a), without exp
    img += p["tone"] * img * (1.0 - img)  # per-image tone curve
    img += p["heel"] * c.X + p["field"] * c.shade
    # Normalise every image to its own random mean and contrast: global brightness carries no label.
    sub = img[:, ::2, ::2]
    mean = sub.mean(axis=(1, 2), keepdims=True)
    std = np.sqrt(np.maximum((sub * sub).mean(axis=(1, 2), keepdims=True) - mean * mean, 1e-8))
    gain = p["t_std"] * 255.0 / std
    img = img * gain + (p["t_mean"] * 255.0 + 0.5 - mean * gain) + (p["noise"] * 255.0) * c.noise
    img = _blur(img, p["blur"] * 0.25, max(1, round(c.size / 80)))
    return np.clip(img, 0, 255).astype(np.uint8)


def _blur(a: np.ndarray, w: np.ndarray, passes: int) -> np.ndarray:
    """Separable 3-tap blur with per-image neighbour weight ``w`` (0.25: binomial), borders kept."""
    for _ in range(passes):
        b = a.copy()
        b[:, :, 1:-1] += w * (a[:, :, :-2] + a[:, :, 2:] - 2.0 * a[:, :, 1:-1])
        a = b.copy()
        a[:, 1:-1] += w * (b[:, :-2] + b[:, 2:] - 2.0 * b[:, 1:-1])
    return a
