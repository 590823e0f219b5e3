"""``manifest``: a CSV of your own.

``root`` is the CSV file or a folder holding ``manifest.csv``. Columns: ``image_path`` (relative to
the CSV), ``patient_id``, optional ``image_id`` (defaults to ``image_path``), ``study_id``, ``view``,
``split``, ``report``; every other column is a label column holding 1 / 0 / -1 / blank (or list the
label columns under ``labels:``). Names are mapped to CheXpert's spelling where one matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..schema import option
from .kinds import DatasetKind, DatasetOptions, register_dataset
from .labels import canonical_name, parse_label_column
from .splits import normalise_split
from .table import ImageTable

REQUIRED = ("image_path", "patient_id")
OPTIONAL = ("image_id", "study_id", "view", "split", "report")


@dataclass(frozen=True)
class ManifestOptions(DatasetOptions):
    labels: tuple[str, ...] | None = option(None, help="label columns; null = every other column")


def resolve_image_path(base: Path, value: str, allow_absolute: bool, source: str) -> str:
    """An image path inside the dataset root (or anywhere, when absolute paths are allowed)."""
    p = Path(value)
    if p.is_absolute():
        if not allow_absolute:
            raise DataError(
                f"{source}: image_path {value!r} is absolute; use paths relative to the CSV or set "
                "`allow_absolute_paths: true`"
            )
        return str(p)
    full = (base / p).resolve()
    if not allow_absolute and not full.is_relative_to(base.resolve()):
        raise DataError(
            f"{source}: image_path {value!r} points outside the dataset folder {base}; move the image "
            "inside it or set `allow_absolute_paths: true`"
        )
    return str(full)


def read_manifest(csv_path: Path, options: ManifestOptions, kind: str = "manifest") -> ImageTable:
    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(f"manifest not found: {csv_path}; point `root` at the CSV or its folder") from None
    except Exception as exc:
        raise DataError(f"cannot read manifest {csv_path}: {exc}") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise DataError(f"{csv_path}: missing column(s) {', '.join(missing)}; a manifest needs {', '.join(REQUIRED)}")
    if options.labels is not None:
        absent = [c for c in options.labels if c not in df.columns]
        if absent:
            raise DataError(f"{csv_path}: label column(s) {', '.join(absent)} not in the CSV")
        label_cols = list(options.labels)
    else:
        label_cols = [c for c in df.columns if c not in REQUIRED + OPTIONAL]
    names = [canonical_name(c) for c in label_cols]
    if len(set(names)) != len(names):
        raise DataError(f"{csv_path}: two label columns map to the same pathology name: {names}")

    base = csv_path.parent
    empty_paths = df["image_path"].str.strip() == ""
    if empty_paths.any():
        raise DataError(f"{csv_path}: row {int(np.flatnonzero(empty_paths)[0]) + 2} has an empty image_path")
    if (df["patient_id"].str.strip() == "").any():
        row = int(np.flatnonzero(df["patient_id"].str.strip() == "")[0]) + 2
        raise DataError(f"{csv_path}: row {row} has an empty patient_id; every image needs its patient")
    paths = [resolve_image_path(base, v, options.allow_absolute_paths, str(csv_path)) for v in df["image_path"]]
    image_ids = df["image_id"] if "image_id" in df.columns else df["image_path"]
    image_ids = [i if i else p for i, p in zip(image_ids, df["image_path"])]
    if len(set(image_ids)) != len(image_ids):
        dup = pd.Series(image_ids)[pd.Series(image_ids).duplicated()].iloc[0]
        raise DataError(f"{csv_path}: image_id {dup!r} appears twice; ids must be unique")
    try:
        splits = [normalise_split(v) for v in df["split"]] if "split" in df.columns else [""] * len(df)
    except ValueError as exc:
        raise DataError(f"{csv_path}: unknown split {exc.args[0]!r}; use train, validate or test") from None
    frame = pd.DataFrame(
        {
            "image_id": image_ids,
            "path": paths,
            "patient_id": df["patient_id"].str.strip(),
            "study_id": df["study_id"] if "study_id" in df.columns else df["patient_id"],
            "view": (df["view"].str.strip().str.upper() if "view" in df.columns else ""),
            "split": splits,
            "report": df["report"] if "report" in df.columns else "",
        }
    )
    labels = (
        np.stack([parse_label_column(df[c].tolist(), c, str(csv_path)) for c in label_cols], axis=1)
        if label_cols else np.zeros((len(df), 0), np.float32)
    )
    return ImageTable(frame=frame, labels=labels, label_names=names, kind=kind, root=base)


@register_dataset("manifest")
class ManifestDataset(DatasetKind):
    Options = ManifestOptions
    description = "a CSV of your own (image_path, patient_id, optional study_id/view/split/report, labels)"

    def read(self) -> ImageTable:
        root = self.options.root_path(self.where)
        if not root.exists():
            raise DataError(f"{self.where}.root: {root} does not exist; point it at your manifest CSV or its folder")
        csv_path = root / "manifest.csv" if root.is_dir() else root
        return read_manifest(csv_path, self.options)
