"""``chexpert``: CheXpert v1.0 (full or ``-small``): ``train.csv`` and ``valid.csv`` as downloaded.

Layout (``ROOT`` = the folder holding the CSV files, e.g. ``CheXpert-v1.0-small``; its parent works too)::

    ROOT/train.csv   Path, Sex, Age, Frontal/Lateral, AP/PA, <14 labels>   (1.0 / 0.0 / -1.0 / blank;
                     a gzipped train.csv.gz / valid.csv.gz is read as well)
    ROOT/valid.csv   the same columns; radiologist-consensus labels (no uncertain, no blank)
    ROOT/train/patient00001/study1/view1_frontal.jpg
    ROOT/valid/patient64541/study1/view1_frontal.jpg

``Path`` is resolved relative to ROOT whether or not it starts with ``CheXpert-v1.0...``. Image ids are
the path below ROOT (``train/patient00001/study1/view1_frontal.jpg``); patients and studies come from it.

Splits: CheXpert ships no public test labels, and papers report on ``valid.csv`` (the
radiologist-labelled set). So by default ``valid.csv`` is the **test** split and a validate split is
carved out of ``train.csv`` by patient (``split_fractions[1]`` of the train + validate share, seeded by
``split_seed``). ``valid_split: validate`` keeps ``valid.csv`` as validate and carves test instead. A
``test.csv`` / ``test_labels.csv`` next to them (the later test-label release) becomes the test split
and nothing is carved. Without ``valid.csv`` (or with ``official_split: false``) there is no official
split and the usual patient-level split applies.

Labels are per image as given (CheXpert repeats each study's labels on its images); ``No Finding`` is as
given (1 or blank). Views: ``LATERAL`` from ``Frontal/Lateral``, else ``AP`` / ``PA`` from ``AP/PA``; a
frontal image with another or no projection is ``FRONTAL`` (kept only if ``views`` lists it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ...errors import DataError
from ...schema import option
from ..columns import carve_patients, dataset_folder, join_image_paths, read_table, require_columns
from ..labels import canonical_name, label_matrix
from ..table import ImageTable
from .base import DatasetKind, DatasetOptions, register_dataset

_META = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")
_TEST_FILES = ("test.csv", "test_labels.csv")


@dataclass(frozen=True)
class ChexpertOptions(DatasetOptions):
    valid_split: Literal["test", "validate"] = option(
        "test", help="what valid.csv is; the other split is carved out of train.csv by patient"
    )
    official_split: bool = option(
        True, help="use train.csv / valid.csv as splits; false: patient-level split"
    )


def table_file(root: Path, name: str) -> Path | None:
    """``root/name``, or its gzipped form ``name.gz``."""
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_root(root: Path) -> Path:
    """The folder holding train.csv / valid.csv: ``root`` itself or its one ``CheXpert-v1.0*`` child."""
    if table_file(root, "train.csv") or table_file(root, "valid.csv"):
        return root
    children = sorted(
        {p.parent for p in root.glob("CheXpert-v1.0*/*.csv*") if p.name.startswith(("train.", "valid."))}
    )
    if len(children) == 1:
        return children[0]
    raise DataError(
        f"chexpert: no train.csv or valid.csv in {root}; point `root` at the CheXpert-v1.0 (or -small) folder"
        + (f" (found several: {', '.join(map(str, children))})" if children else "")
    )


def _views(df: pd.DataFrame, rel: pd.Series) -> np.ndarray:
    def column(name: str) -> pd.Series:
        values = df[name] if name in df.columns else pd.Series("", index=df.index)
        return values.fillna("").astype(str).str.strip().str.upper()

    fl, appa = column("Frontal/Lateral"), column("AP/PA")
    blank = (fl == "").to_numpy()
    if blank.any():  # no Frontal/Lateral column (test labels) or a blank: the file name says it
        name = rel[blank].str.lower()
        fl[blank] = np.where(
            name.str.contains("lateral"), "LATERAL", np.where(name.str.contains("frontal"), "FRONTAL", "")
        )
    frontal = np.where(appa.isin(["AP", "PA"]), appa, "FRONTAL")
    return np.where(fl == "FRONTAL", frontal, fl)


def _read_csv(
    root: Path, name: str, split: str, allow_absolute: bool
) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    path = table_file(root, name) or root / name
    df = read_table(
        path, f"CheXpert {name}", dtype={c: str for c in ("Path", "Sex", "Frontal/Lateral", "AP/PA")}
    )
    require_columns(df, ["Path"], path, f"CheXpert {name}")
    rel = (
        df["Path"]
        .fillna("")
        .astype(str)
        .str.strip()
        .str.replace(r"^(?:\./)?CheXpert-v1\.0[^/\\]*[/\\]", "", regex=True)
    )
    ids = rel.str.extract(r"(?P<patient>patient\d+)/(?P<study>study\d+)/")
    if ids["patient"].isna().any():
        bad = rel[ids["patient"].isna()].iloc[0]
        raise DataError(
            f"{path}: Path {bad!r} does not name patientNNNNN/studyN/; is this CheXpert's {name}?"
        )
    columns = [c for c in df.columns if c not in _META and not str(c).startswith("Unnamed")]
    frame = pd.DataFrame(
        {
            "image_id": rel,
            "path": join_image_paths(root, rel, allow_absolute, str(path), column="Path"),
            "patient_id": ids["patient"],
            "study_id": ids["patient"] + "/" + ids["study"],
            "view": _views(df, rel),
            "split": split,
            "report": "",
        }
    )
    return frame, label_matrix(df, columns, str(path)), [canonical_name(c) for c in columns]


def _align(labels: np.ndarray, names: list[str], order: list[str]) -> np.ndarray:
    out = np.full((len(labels), len(order)), np.nan, dtype=np.float32)
    for j, name in enumerate(names):
        out[:, order.index(name)] = labels[:, j]
    return out


@register_dataset("chexpert")
class ChexpertDataset(DatasetKind):
    Options = ChexpertOptions
    description = "CheXpert v1.0 (full or small) train.csv/valid.csv; valid.csv is the test split"

    def read(self) -> ImageTable:
        o = self.options
        root = find_root(dataset_folder(o, self.where, "the CheXpert-v1.0 (or -small) folder"))
        test_file = next((n for n in _TEST_FILES if table_file(root, n)), None)
        has_valid = table_file(root, "valid.csv") is not None
        files = [("train.csv", "train")] if table_file(root, "train.csv") or not has_valid else []
        files += [("valid.csv", "validate" if test_file else o.valid_split)] if has_valid else []
        files += [(test_file, "test")] if test_file else []
        parts = [_read_csv(root, name, split, o.allow_absolute_paths) for name, split in files]
        order = list(dict.fromkeys(n for _, _, names in parts for n in names))
        frame = pd.concat([f for f, _, _ in parts], ignore_index=True)
        labels = np.concatenate([_align(lab, names, order) for _, lab, names in parts])
        if not o.official_split or not has_valid:
            frame["split"] = ""  # no official held-out set: loading makes a patient-level split
        elif not test_file:
            missing = "validate" if o.valid_split == "test" else "test"
            train = np.flatnonzero(frame["split"].to_numpy() == "train")
            share = o.split_fractions[1 if missing == "validate" else 2]
            fraction = share / (o.split_fractions[0] + share)
            carved = carve_patients(frame["patient_id"].to_numpy(), train, fraction, o.split_seed, salt=0xC4E)
            frame.loc[carved, "split"] = missing
        return ImageTable(frame=frame, labels=labels, label_names=order, kind="chexpert", root=root)
