"""Seeds derived from the recipe seed, so that every random choice is fixed and independent."""

from __future__ import annotations

import zlib

import numpy as np


def derive_seed(seed: int, *parts: object) -> int:
    """A 31-bit seed from the recipe seed and labels (stable across processes and Python versions)."""
    words = [int(seed)] + [zlib.crc32(str(p).encode()) for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1)[0] & 0x7FFFFFFF)
