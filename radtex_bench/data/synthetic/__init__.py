"""Synthetic frontal chest radiographs with free-text reports: the embedded default dataset (SPEC §7).

What is generated and why it looks the way it does is documented in ``docs/synthetic.md``. In short:

* **Sampling** (:mod:`.sampling`): one random stream per (seed, patient), so image ``k`` does not
  depend on ``n``. A patient has 1-3 studies, a split, a body (anatomy parameters) and chronic
  conditions; each study draws acute findings (with realistic correlations), devices and a view.
* **Painting** (:mod:`.render`): vectorised numpy over a chunk of images. Anatomy (:mod:`.anatomy`)
  is an attenuation map in the patient's own coordinate frame (so position, rotation and size vary);
  every finding (:mod:`.findings`) and device (:mod:`.devices`) adds a *localised* change to it; the
  map goes through a film curve, then each image is normalised to a random mean/contrast (so no label
  can be read off mean intensity), and gets noise and blur.
* **Reports** (:mod:`.reports`, :mod:`.wording`): every sentence carries the label records a
  CheXpert-style labeler would read from it (positive / negated / hedged); the CSV labels are the
  aggregation of those records, so text and labels agree by construction. Hedged (-1) findings are
  painted at borderline severity.
* **Writing** (:mod:`.writer`): PNGs and ``manifest.csv`` built in a temporary folder and renamed into
  place, so a killed run never leaves half a dataset.

Coordinates: ``X`` runs left to right and ``Y`` top to bottom of the image, both in ``[-1, 1]``.
Radiology convention: the patient's right is the image's left, so side ``sigma = -1`` is the patient's
right and ``+1`` the patient's left; ``S = sigma * X`` is the distance from the midline on that side.
"""

from __future__ import annotations

from .model import LEFT, RIGHT, Finding, Study
from .render import _paint as _paint  # reachable for tests that paint one study
from .reports import LABEL_COLUMNS
from .sampling import SPLIT_FRACTIONS
from .sampling import _apply_to_anatomy as _apply_to_anatomy  # reachable for tests
from .sampling import _sample_patient as _sample_patient  # reachable for tests
from .wording import HEDGE_CUES
from .writer import (
    GENERATOR_VERSION,
    MANIFEST_COLUMNS,
    generate_synthetic,
    generator_params,
    same_params,
    stored_params,
)

__all__ = [
    "GENERATOR_VERSION",
    "HEDGE_CUES",
    "LABEL_COLUMNS",
    "LEFT",
    "MANIFEST_COLUMNS",
    "RIGHT",
    "SPLIT_FRACTIONS",
    "Finding",
    "Study",
    "generate_synthetic",
    "generator_params",
    "same_params",
    "stored_params",
]
