"""``radtex-bench data summary``: what a dataset folder holds, in the JSON form of SPEC §6."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from . import reports
from .columns import files_present
from .kinds import DatasetSpec
from .labels import label_counts
from .table import SPLITS


def summarise(kind: str, root: str, **options: Any) -> dict[str, Any]:
    """Counts over every listed image (all views).

    ``images``: listed and present on disk; ``studies`` / ``patients``: distinct ids over the listed
    images; ``reports``: images whose extracted report text is non-empty (:func:`reports.extract_all` with
    the block's ``report_section`` / ``drop_prior``: exactly what text objectives see, so a report made
    only of administrative sections does not count); ``views``: images per view (unknown views are
    not counted); ``splits``: only when the dataset ships an official split (as the reader returns it,
    e.g. NIH's validate carved out of train_val_list.txt); ``labels``: per label over listed images.
    """
    if kind == "synthetic":
        from .synthetic import stored_params

        # Summarise the synthetic dataset that is there, whatever parameters it was generated with.
        stored = stored_params(Path(root).expanduser()) or {}
        options = {k: stored[k] for k in ("n", "size", "seed") if k in stored} | options
    spec = DatasetSpec.from_plain({"kind": kind, "root": root, "views": None, **options}, "data")
    table = spec.read("data")
    frame = table.frame
    views = Counter(v for v in frame["view"] if v)
    # The text objectives' definition of the report, not the raw text (SPEC §6).
    texts = reports.extract_all(frame["report"], spec.options.report_section, spec.options.drop_prior)
    out: dict[str, Any] = {
        "kind": kind,
        "images": int(files_present(frame["path"]).sum()),
        "studies": int(frame["study_id"].nunique()),
        "patients": int(frame["patient_id"].nunique()),
        "reports": sum(map(bool, texts)),
        "views": dict(sorted(views.items(), key=lambda kv: (-kv[1], kv[0]))),
    }
    splits = Counter(s for s in frame["split"] if s)
    if splits:
        out["splits"] = {s: int(splits.get(s, 0)) for s in SPLITS}
    out["labels"] = {name: label_counts(table.labels[:, j]) for j, name in enumerate(table.label_names)}
    return out
