"""``radtex-bench data summary``: what a dataset folder holds, in the JSON form of SPEC §6."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy as np

from .kinds import DatasetSpec
from .labels import label_counts
from .table import SPLITS


def summarise(kind: str, root: str, **options: Any) -> dict[str, Any]:
    """Counts over every listed image (all views); ``images`` counts those present on disk."""
    spec = DatasetSpec.from_plain({"kind": kind, "root": root, "views": None, **options}, "data")
    table = spec.reader("data").read()
    frame = table.frame
    present = np.array([os.path.isfile(p) for p in frame["path"]], dtype=bool)
    views = Counter(v for v in frame["view"] if v)
    out: dict[str, Any] = {
        "kind": kind,
        "images": int(present.sum()),
        "studies": int(frame["study_id"].nunique()),
        "patients": int(frame["patient_id"].nunique()),
        "reports": int((frame["report"].str.strip() != "").sum()),
        "views": dict(sorted(views.items())),
    }
    splits = Counter(s for s in frame["split"] if s)
    if splits:
        out["splits"] = {s: int(splits.get(s, 0)) for s in SPLITS}
    out["labels"] = {name: label_counts(table.labels[:, j]) for j, name in enumerate(table.label_names)}
    return out
