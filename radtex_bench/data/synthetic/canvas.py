"""The canvas a chunk of images is painted on, and the cheap drawing primitives the painters share.

Cost model (one core): an elementwise op on a 64 px image costs ~1 us, a transcendental 10-100 us.
So: coordinates are separable (X per column [B, 1, W], Y per row [B, H, 1]) and terms in one of
them cost a row, not an image; the patient's tilt is applied at the end as a per-row shift; the
anatomy uses arithmetic, sqrt and clip only (triangle waves instead of cosines, polynomials instead
of exponentials) and both sides at once through |X|; structures are painted only on the rows (and
columns) they can reach; textures come from banks computed once per (seed, size).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from .model import Study
from .textures import FIELDS, crop, texture_banks

_PART_PIXELS = 1 << 16  # anatomy is painted in parts this big: temporaries stay in the CPU cache


def ramp(v, width):
    """Soft step from 0 to 1 centred on ``v = 0``, ``width`` wide: anti-aliased edges at any size."""
    return np.clip(v * (1.0 / width) + 0.5, 0.0, 1.0)


def bump(d2):
    """Smooth bump: 1 at ``d2 = 0``, 0 for ``d2 >= 1`` (a cheap Gaussian)."""
    t = np.clip(1.0 - d2, 0.0, 1.0)
    return t * t


def frac_dist(phase):
    """Distance to the nearest integer, in [0, 0.5]: periodic bands (ribs) without a cosine."""
    return np.abs(phase - np.floor(phase + 0.5))


def col(values) -> np.ndarray:
    """Per-image scalars as a (B, 1, 1) float32 column that broadcasts over pixels."""
    return np.asarray(values, dtype=np.float32).reshape(-1, 1, 1)


class Canvas:
    """A chunk of images being painted: coordinates, anatomy parameters and the attenuation map."""

    def __init__(self, studies: list[Study], size: int, seed: int):
        self.size, self.B = size, len(studies)
        self.px = 2.0 / size  # one pixel in normalised units
        self.p = {k: col([s.anat[k] for s in studies]) for k in studies[0].anat}
        p = self.p
        grid = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2.0 - 1.0
        # Patient frame (before the tilt): images differ by shift and magnification.
        self.X = (grid[None, None, :] - p["tx"]) / p["scale"]  # [B, 1, W]
        self.Y = (grid[None, :, None] - p["ty"]) / p["scale"]  # [B, H, 1]
        self.ax = np.abs(self.X)  # distance from the midline, both sides at once
        self.left = self.X > 0  # the patient's left half (image right)
        full = (self.B, size, size)
        self.A = np.zeros(full, np.float32)  # attenuation (brighter = more)
        self.quiet = np.zeros(full, np.float32)  # where lung markings vanish (pneumothorax)
        self.lung = np.zeros(full, np.float32)  # aerated lung seen by a pixel (set by paint_lungs)
        self.level = np.full(full, 9.0, np.float32)  # < 1 inside the thoracic cavity
        self.dome = np.full(full, 9.0, np.float32)  # hemidiaphragm line under each pixel
        self.mx = np.empty_like(self.Y)  # spine line (set by paint_mediastinum)
        banks = texture_banks(seed, size)
        fields = crop(banks["fields"], [s.pix for s in studies], size)
        for j, (name, _) in enumerate(FIELDS):
            setattr(self, name, fields[:, j])
        vb = banks["vessels"]
        self.vessels = np.stack(
            [vb[int(s.pix[3] * len(vb))][:, :: 1 if s.pix[4] < 0.5 else -1] for s in studies]
        )

    def parts(self) -> Iterator[Canvas]:
        """Views of consecutive images, small enough for the CPU cache."""
        step = max(1, _PART_PIXELS // (self.size * self.size))
        for a in range(0, self.B, step):
            view = object.__new__(Canvas)
            view.__dict__ = {
                k: v[a : a + step] if isinstance(v, np.ndarray) and v.ndim >= 3 else v
                for k, v in self.__dict__.items()
            }
            view.p = {k: v[a : a + step] for k, v in self.p.items()}
            view.B = view.A.shape[0]
            yield view

    def rows(self, ylo, yhi, sel=None) -> slice:
        """Image rows that can show patient-frame Y in [ylo, yhi] (scalars or per-image columns),
        in any image of this canvas (or of the images ``sel``)."""
        s, ty = self.p["scale"], self.p["ty"]
        if sel is not None:
            s, ty = s[sel], ty[sel]
        return self._span(float(np.min(ylo * s + ty)), float(np.max(yhi * s + ty)))

    def cols(self, xlo, xhi, sel=None) -> slice:
        """Image columns that can show patient-frame X in [xlo, xhi] (before the tilt, with margin)."""
        s, tx = self.p["scale"], self.p["tx"]
        if sel is not None:
            s, tx = s[sel], tx[sel]
        return self._span(float(np.min(xlo * s + tx)), float(np.max(xhi * s + tx)))

    def _span(self, g0: float, g1: float) -> slice:
        r0 = int(math.floor((g0 + 1.0) * 0.5 * self.size - 0.5))
        r1 = int(math.ceil((g1 + 1.0) * 0.5 * self.size - 0.5)) + 1
        return slice(min(max(0, r0), self.size), min(self.size, max(r1, 0)))

    def lung_top(self):
        """Highest Y where the (anti-aliased) lung mask is non-zero, per image."""
        soft = max(0.04, 11 * self.px)
        return self.p["apex"] + 0.7 - 0.7 * math.sqrt(1.0 + soft / 2) - 0.01

    def lung_rows(self) -> slice:
        """Rows that can hold lung (apex to the costophrenic recesses)."""
        p = self.p
        return self.rows(self.lung_top(), np.maximum(p["dia_r"], p["dia_l"]) + 0.25)
