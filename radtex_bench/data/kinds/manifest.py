"""``manifest``: a CSV of your own.

``root`` is the CSV file or a folder holding ``manifest.csv``. Columns: ``image_path`` (relative to
the CSV), ``patient_id``, optional ``image_id`` (defaults to ``image_path``), ``study_id``, ``view``,
``split``, ``report``; every other column is a label column holding 1 / 0 / -1 / blank (or list the
label columns under ``labels:``). Names are mapped to CheXpert's spelling where one matches.

Image paths must stay inside the CSV's folder (``..`` that leaves it, or an absolute path, is an error)
unless ``allow_absolute_paths: true``; symlinks inside the folder are fine. Views are upper-cased with
lateral spellings (``LL``, ``RL``, ``LAT``) read as ``LATERAL``; a blank ``study_id`` is the patient's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import DataError
from ...schema import option
from ..columns import join_image_paths, normalise_views, read_table
from ..labels import canonical_name, label_matrix
from ..splits import normalise_split
from ..table import ImageTable
from .base import DatasetKind, DatasetOptions, register_dataset

REQUIRED = ("image_path", "patient_id")
OPTIONAL = ("image_id", "study_id", "view", "split", "report")


@dataclass(frozen=True)
class ManifestOptions(DatasetOptions):
    labels: tuple[str, ...] | None = option(None, help="label columns; null = every other column")


def resolve_image_path(base: Path, value: str, allow_absolute: bool, source: str) -> str:
    """An image path inside the dataset root (or anywhere, when absolute paths are allowed)."""
    return str(join_image_paths(base, pd.Series([value]), allow_absolute, source).iloc[0])


def _first_row(mask: pd.Series) -> int:
    return int(np.flatnonzero(mask.to_numpy())[0]) + 2  # + header line, 1-based


def read_manifest(csv_path: Path, options: ManifestOptions, kind: str = "manifest") -> ImageTable:
    """Read a manifest CSV; every check works on whole columns (a 400k-row manifest loads in seconds)."""
    source = str(csv_path)
    if not Path(csv_path).exists():
        raise DataError(f"manifest not found: {csv_path}; point `root` at the CSV or its folder")
    df = read_table(Path(csv_path), "manifest", dtype=str, keep_default_na=False)
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise DataError(
            f"{csv_path}: missing column(s) {', '.join(missing)}; a manifest needs {', '.join(REQUIRED)}"
        )
    if options.labels is not None:
        absent = [c for c in options.labels if c not in df.columns]
        if absent:
            raise DataError(f"{csv_path}: label column(s) {', '.join(absent)} not in the CSV")
        label_cols = list(options.labels)
    else:
        label_cols = [c for c in df.columns if c not in REQUIRED + OPTIONAL and not c.startswith("Unnamed:")]
    names = [canonical_name(c) for c in label_cols]
    if len(set(names)) != len(names):
        raise DataError(f"{csv_path}: two label columns map to the same pathology name: {names}")

    image_path = df["image_path"].str.strip()
    patient = df["patient_id"].str.strip()
    if (image_path == "").any():
        raise DataError(f"{csv_path}: row {_first_row(image_path == '')} has an empty image_path")
    if (patient == "").any():
        raise DataError(
            f"{csv_path}: row {_first_row(patient == '')} has an empty patient_id; every image needs "
            "its patient"
        )
    paths = join_image_paths(csv_path.parent, image_path, options.allow_absolute_paths, source)
    image_ids = df["image_id"].str.strip() if "image_id" in df.columns else image_path
    image_ids = image_ids.where(image_ids != "", image_path)
    if image_ids.duplicated().any():
        raise DataError(
            f"{csv_path}: image_id {image_ids[image_ids.duplicated()].iloc[0]!r} appears twice; "
            "ids must be unique"
        )
    splits = split_column(df["split"], source) if "split" in df.columns else ""
    study = df["study_id"].str.strip() if "study_id" in df.columns else patient
    frame = pd.DataFrame(
        {
            "image_id": image_ids,
            "path": paths,
            "patient_id": patient,
            "study_id": study.where(study != "", patient),
            "view": normalise_views(df["view"]).to_numpy() if "view" in df.columns else "",
            "split": splits,
            "report": df["report"] if "report" in df.columns else "",
        }
    )
    labels = label_matrix(df, label_cols, source)
    return ImageTable(frame=frame, labels=labels, label_names=names, kind=kind, root=csv_path.parent)


def split_column(values: pd.Series, source: str) -> np.ndarray:
    """A split column normalised to train / validate / test / ``""``."""
    unique = {v: v for v in pd.unique(values)}
    try:
        mapping = {v: normalise_split(v) for v in unique}
    except ValueError as exc:
        raise DataError(f"{source}: unknown split {exc.args[0]!r}; use train, validate or test") from None
    return values.map(mapping).to_numpy(dtype=object)


@register_dataset("manifest")
class ManifestDataset(DatasetKind):
    Options = ManifestOptions
    description = "a CSV of your own (image_path, patient_id, optional study_id/view/split/report, labels)"

    def read(self) -> ImageTable:
        root = self.options.root_path(self.where)
        if not root.exists():
            raise DataError(
                f"{self.where}.root: {root} does not exist; point it at your manifest CSV or its folder"
            )
        csv_path = root / "manifest.csv" if root.is_dir() else root
        return read_manifest(csv_path, self.options)
