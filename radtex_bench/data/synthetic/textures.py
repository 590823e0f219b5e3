"""Random texture banks of a dataset: smooth fields, pixel noise and lung markings.

Computing textures per image would dominate the rendering time, so they are computed once per
(seed, size) and every image crops them at its own offsets (chosen by uniforms the sampler draws).
"""

from __future__ import annotations

import numpy as np

from .model import LEFT, RIGHT

_SALT_PIXELS = 0x9E37  # salt of the texture banks of a dataset
_BANKS: dict[tuple[int, int], dict[str, np.ndarray]] = {}
#: Random textures: name -> features across one image side (independent of the pixel size); the
#: last is pixel noise.
FIELDS = (("shade", 5), ("tex", 7), ("fine", 18), ("noise", 0))
PIX_DRAWS = 5  # uniforms a study needs to pick its textures: bank entry, offsets, vessels, mirror


def texture_banks(seed: int, size: int) -> dict[str, np.ndarray]:
    key = (seed, size)
    if key not in _BANKS:
        _BANKS.clear()  # one dataset at a time; at most ~40 MB
        _BANKS[key] = _make_banks(seed, size)
    return _BANKS[key]


def _make_banks(seed: int, size: int) -> dict[str, np.ndarray]:
    """Textures shared by a dataset; every image crops them at its own offsets (1.5 x its side)."""
    rng = np.random.default_rng([seed, size, _SALT_PIXELS])
    big = size + size // 2
    k = int(min(32, max(4, (1 << 21) // (big * big * len(FIELDS)))))
    fields = np.empty((k, len(FIELDS), big, big), np.float32)
    for j, (_, cells) in enumerate(FIELDS):
        if cells == 0:
            fields[:, j] = rng.standard_normal((k, big, big), dtype=np.float32)
            continue
        g = int(round(cells * 1.5)) + 1
        up = _upsampler(big, g)
        f = up[None] @ rng.standard_normal((k, g, g), dtype=np.float32) @ up.T[None]
        fields[:, j] = f / f.std(axis=(1, 2), keepdims=True)
    return {"fields": fields, "vessels": _vessel_bank(rng, 2 * k, size)}


def _upsampler(n: int, g: int) -> np.ndarray:
    """(n, g) bilinear interpolation matrix from g grid points to n pixels."""
    pos = (np.arange(n, dtype=np.float32) + 0.5) / n * (g - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, g - 2)
    w = pos - lo
    up = np.zeros((n, g), np.float32)
    up[np.arange(n), lo] = 1 - w
    up[np.arange(n), lo + 1] = w
    return up


def _vessel_bank(rng: np.random.Generator, k: int, size: int) -> np.ndarray:
    """Lung markings: branching vessels radiating from both hila, thinning to the periphery, patchy,
    over a faint parenchymal mottle."""
    grid = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2.0 - 1.0
    x, y = grid[None, :], grid[:, None]
    out = np.zeros((k, size, size), np.float32)
    up = _upsampler(size, 9)
    for i in range(k):
        n, ph1, ph2 = rng.uniform(19, 27), rng.uniform(0, 6.3), rng.uniform(0, 6.3)
        wob_field = up @ rng.standard_normal((9, 9)).astype(np.float32) @ up.T
        for sigma in (RIGHT, LEFT):
            dx, dy = sigma * x - 0.2, y + 0.12
            r = np.sqrt(dx * dx + dy * dy) + 1e-3
            th = np.arctan2(dy, dx)
            wob = 1.6 * np.sin(r * 7.0 + ph2) + 0.8 * wob_field
            v1 = (0.5 + 0.5 * np.cos(n * th + wob + ph1)) ** 6
            v2 = (0.5 + 0.5 * np.cos(1.6 * n * th - 1.4 * wob + ph2)) ** 6 * np.clip((r - 0.15) / 0.2, 0, 1)
            side = np.clip(sigma * x * size, 0, 1)
            out[i] += (v1 + 0.6 * v2) * np.exp(-2.4 * r) * np.clip((r - 0.02) / 0.06, 0, 1) * side
        out[i] *= np.clip(0.55 + 0.45 * wob_field / wob_field.std(), 0.0, 1.5)
    out /= out.max(axis=(1, 2), keepdims=True)
    fine = _upsampler(size, 19)
    mottle = fine[None] @ rng.standard_normal((k, 19, 19)).astype(np.float32) @ fine.T[None]
    return out + 0.2 * mottle / mottle.std()


def crop(bank: np.ndarray, picks: list[list[float]], size: int) -> np.ndarray:
    """One (size x size) crop of every channel per image; entry and offsets from three uniforms."""
    k, span = bank.shape[0], bank.shape[-1] - size + 1
    out = np.empty((len(picks), bank.shape[1], size, size), np.float32)
    for i, u in enumerate(picks):
        oy, ox = int(u[1] * span), int(u[2] * span)
        out[i] = bank[int(u[0] * k), :, oy : oy + size, ox : ox + size]
    return out
