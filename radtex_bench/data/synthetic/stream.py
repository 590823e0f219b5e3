"""Buffered scalar random draws: the one source of randomness of sampling and report wording.

Each patient gets its own stream (seeded by the dataset seed and the patient number), so a patient's
studies and reports do not depend on how many images are generated.
"""

from __future__ import annotations

import math

import numpy as np


class Stream:
    """Scalar draws from a numpy ``Generator``, buffered in blocks: the sampler makes ~100 draws per
    study and numpy's per-call overhead would otherwise dominate. Deterministic for a seed."""

    def __init__(self, words: list[int]):
        self._rng = np.random.default_rng(words)
        self._buf: list[float] = []

    def random(self) -> float:
        if not self._buf:
            self._buf = self._rng.random(128).tolist()[::-1]
        return self._buf.pop()

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.random()

    def normal(self, mu: float, sd: float) -> float:
        u1, u2 = 1.0 - self.random(), self.random()  # Box-Muller
        return mu + sd * math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)

    def integers(self, lo: int, hi: int) -> int:
        """An int in [lo, hi)."""
        return lo + min(int(self.random() * (hi - lo)), hi - lo - 1)

    def choice(self, seq, p=None):
        if p is None:
            return seq[self.integers(0, len(seq))]
        u, acc = self.random(), 0.0
        for item, w in zip(seq, p):
            acc += w
            if u < acc:
                return item
        return seq[-1]
