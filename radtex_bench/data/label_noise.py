"""A stated model of pretraining-label noise: flips, positives turned uncertain, missing labels, images
without labels.

Real pretraining labels (CheXpert's, MIMIC-CXR's) are mined from reports by a labeler: some are wrong,
many positives are hedged into "uncertain", many findings are never mentioned, and some studies carry no
usable label at all. :class:`LabelNoise` applies the same four kinds of error, at stated rates, to a
four-state label matrix (1 / 0 / -1 / NaN, :mod:`radtex_bench.data.labels`), deterministically from a
seed. The ``synthetic`` dataset kind uses it for the labels its pretraining objectives see
(docs/synthetic.md, "Pretraining labels"); evaluation labels are never passed through it.

The steps run in this order, each on its own random stream and each independent of the others:

1. **flip**: every definite label (1 or 0) of pathology ``p`` is flipped (1 <-> 0) with probability
   ``flip[p]`` (symmetric, class-independent noise; uncertain and missing labels are left alone);
2. **uncertain**: every positive (after step 1) becomes uncertain (-1) with probability ``uncertain``;
3. **missing**: every label that exists (after step 2) becomes missing (NaN) with probability ``missing``;
4. **unlabelled**: every image loses all its labels with probability ``unlabelled``.

Draws are row-major uniforms from ``numpy.random.default_rng([seed, salt])``, so row ``k`` gets the same
noise whatever the number of rows after it: image ``k`` of a synthetic set is corrupted the same way for
every ``n``, as the generator draws it the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .labels import NEGATIVE, POSITIVE, UNCERTAIN, canonical_name

#: Salts of the four independent streams (one per step).
_SALTS = {"flip": 0xF11B, "uncertain": 0x0C3E, "missing": 0x0155, "unlabelled": 0x0A11}


@dataclass(frozen=True)
class LabelNoise:
    """The noise model. ``flip``: one rate for every pathology, or ``{pathology: rate}`` (others 0);
    rates are probabilities (``flip`` at most 0.5: beyond it a label says the opposite of the truth)."""

    flip: float | Mapping[str, float] = 0.0
    uncertain: float = 0.0
    missing: float = 0.0
    unlabelled: float = 0.0
    seed: int = 0

    def flip_rates(self, names: Sequence[str]) -> np.ndarray:
        """``[L]`` flip probability of each label column ``names`` (matched by canonical name)."""
        if isinstance(self.flip, Mapping):
            rates = {canonical_name(k): float(v) for k, v in self.flip.items()}
            return np.array([rates.get(canonical_name(n), 0.0) for n in names], dtype=np.float64)
        return np.full(len(names), float(self.flip), dtype=np.float64)

    def is_identity(self, names: Sequence[str] = ()) -> bool:
        """Whether the model changes nothing (every rate 0)."""
        flips = self.flip_rates(names) if isinstance(self.flip, Mapping) else np.array([self.flip])
        return not (flips.any() or self.uncertain or self.missing or self.unlabelled)

    def _uniform(self, step: str, shape: tuple[int, ...]) -> np.ndarray:
        return np.random.default_rng([int(self.seed), _SALTS[step]]).random(shape)

    def apply(self, labels: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """The noisy copy of ``labels`` (``[N, L]`` float32, 1 / 0 / -1 / NaN; columns ``names``)."""
        out = np.array(labels, dtype=np.float32, copy=True)  # [N, L]
        n, width = out.shape
        if n == 0 or width == 0:
            return out
        flip = self.flip_rates(names)[None, :]  # [1, L]
        if flip.any():
            hit = np.isin(out, (POSITIVE, NEGATIVE)) & (self._uniform("flip", out.shape) < flip)
            out[hit] = POSITIVE - out[hit]  # 1 <-> 0
        if self.uncertain:
            hit = (out == POSITIVE) & (self._uniform("uncertain", out.shape) < self.uncertain)
            out[hit] = UNCERTAIN
        if self.missing:
            out[~np.isnan(out) & (self._uniform("missing", out.shape) < self.missing)] = np.nan
        if self.unlabelled:
            out[self._uniform("unlabelled", (n,)) < self.unlabelled] = np.nan
        return out


def describe_change(before: np.ndarray, after: np.ndarray) -> str:
    """One line for run.log: what became of ``before``'s definite labels in ``after`` (both ``[N, L]``,
    four states): the shares kept, flipped, made uncertain and made missing (they sum to 100%)."""
    before, after = np.asarray(before, np.float32), np.asarray(after, np.float32)
    definite = np.isin(before, (POSITIVE, NEGATIVE))
    total = max(int(definite.sum()), 1)
    kept = definite & (after == before)
    flipped = definite & np.isin(after, (POSITIVE, NEGATIVE)) & (after != before)
    uncertain = definite & (after == UNCERTAIN)
    missing = definite & np.isnan(after)
    empty = np.isnan(after).all(axis=1) & ~np.isnan(before).all(axis=1)
    shares = ", ".join(
        f"{hit.sum() / total:.1%} {what}"
        for hit, what in (
            (kept, "kept"),
            (flipped, "flipped"),
            (uncertain, "uncertain"),
            (missing, "missing"),
        )
    )
    return f"of {int(definite.sum())} definite labels {shares}; {int(empty.sum())} of {len(before)} images without any label"
