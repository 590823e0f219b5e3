"""``nih``: NIH ChestX-ray14 (``Data_Entry_2017*.csv`` + ``images*/``) as downloaded.

Layout (``ROOT`` = the download folder)::

    ROOT/Data_Entry_2017_v2020.csv    Image Index, Finding Labels, Follow-up #, Patient ID, ..., View Position
    ROOT/images/00000001_000.png      the 12 archives unpacked into one folder, or kept apart as
    ROOT/images_001/images/...        images_001/images/ ... images_012/images/ (Kaggle) or images_001/
    ROOT/train_val_list.txt           optional official split: one Image Index per line
    ROOT/test_list.txt

With several ``Data_Entry_2017*.csv`` the last by name (``..._v2020.csv``, the revised labels) is used.

Labels: ``Finding Labels`` is a ``|``-separated list of positives; every other NIH label is negative
(NIH has no uncertain and no missing labels). ``No Finding`` is NIH's own label. Names: ``Effusion`` ->
``Pleural Effusion``; Atelectasis, Cardiomegaly, Consolidation, Edema, Pneumonia, Pneumothorax are
CheXpert names already; Infiltration, Mass, Nodule, Emphysema, Fibrosis, Pleural Thickening and Hernia
keep their own names (not merged into Lung Opacity / Lung Lesion: the definitions differ). NIH has no
Enlarged Cardiomediastinum, Lung Opacity, Lung Lesion, Pleural Other, Fracture or Support Devices: those
are missing for every NIH image.

Splits: without the lists, none (patient-level split by ``split_fractions``). With them, ``test_list.txt``
is test and validate is carved out of ``train_val_list.txt`` by patient (``split_fractions[1]`` of the
train + validate share, seeded by ``split_seed``); the official lists are patient-disjoint.
Each image is its own study (NIH has none); views from ``View Position`` (PA / AP).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import DataError
from ...schema import option
from ..columns import (
    carve_patients,
    dataset_folder,
    first_existing,
    normalise_views,
    read_table,
    require_columns,
)
from ..table import ImageTable
from .base import DatasetKind, DatasetOptions, register_dataset

#: NIH label -> name used here (CheXpert's where the finding is the same).
NIH_LABELS = {
    "No Finding": "No Finding",
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
    "Effusion": "Pleural Effusion",
    "Emphysema": "Emphysema",
    "Fibrosis": "Fibrosis",
    "Hernia": "Hernia",
    "Infiltration": "Infiltration",
    "Mass": "Mass",
    "Nodule": "Nodule",
    "Pleural_Thickening": "Pleural Thickening",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
}
_COLUMNS = ("Image Index", "Finding Labels", "Patient ID", "View Position")


@dataclass(frozen=True)
class NihOptions(DatasetOptions):
    official_split: bool = option(
        True, help="use train_val_list.txt / test_list.txt when present; false: patient-level split"
    )


def image_folders(root: Path) -> dict[str, str]:
    """Image file name -> absolute folder, listing each ``images*`` folder once."""
    candidates = [root / "images"] + sorted(root.glob("images_*/images")) + sorted(root.glob("images_*"))
    where: dict[str, str] = {}
    for folder in candidates:
        if not folder.is_dir():
            continue
        base = str(folder.absolute())
        with os.scandir(folder) as entries:
            for e in entries:
                if e.name.lower().endswith(".png"):
                    where.setdefault(e.name, base)
    return where


def labels_from_lists(findings: pd.Series, source: str) -> tuple[np.ndarray, list[str]]:
    """Pipe-separated positives -> 1, every other NIH label 0."""
    dummies = (
        findings.fillna("")
        .astype(str)
        .str.replace(r"\s*\|\s*", "|", regex=True)
        .str.strip()
        .str.get_dummies("|")
    )
    unknown = [c for c in dummies.columns if c not in NIH_LABELS]
    if unknown:
        raise DataError(
            f"{source}: unknown NIH finding(s) {', '.join(map(repr, unknown))} in 'Finding Labels'; "
            f"NIH's labels are {', '.join(NIH_LABELS)}"
        )
    dummies = dummies.reindex(columns=list(NIH_LABELS), fill_value=0)
    return dummies.to_numpy(dtype=np.float32), list(NIH_LABELS.values())


def _read_list(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def official_split(root: Path, names: pd.Series) -> np.ndarray | None:
    lists = {n: root / n for n in ("train_val_list.txt", "test_list.txt")}
    present = [n for n, p in lists.items() if p.is_file()]
    if not present:
        return None
    if len(present) == 1:
        missing = next(n for n in lists if n not in present)
        raise DataError(
            f"nih: {lists[present[0]]} is there but {missing} is not; add it, or remove both "
            "(or set `official_split: false`) for a patient-level split"
        )
    train_val, test = _read_list(lists["train_val_list.txt"]), _read_list(lists["test_list.txt"])
    split = np.where(names.isin(test), "test", np.where(names.isin(train_val), "train", "")).astype(object)
    if (split == "").any():
        first = names[split == ""].iloc[0]
        raise DataError(
            f"nih: {int((split == '').sum())} images (first: {first}) are in neither "
            f"train_val_list.txt nor test_list.txt in {root}; use the lists of the same release, "
            "or set `official_split: false`"
        )
    return split


@register_dataset("nih")
class NihDataset(DatasetKind):
    Options = NihOptions
    description = "NIH ChestX-ray14 (Data_Entry_2017*.csv + images*/), optional official split lists"

    def read(self) -> ImageTable:
        o = self.options
        root = dataset_folder(
            o, self.where, "the ChestX-ray14 folder (holding Data_Entry_2017*.csv, images*/)"
        )
        csv_path = first_existing(root, ["Data_Entry_2017*.csv", "Data_Entry*.csv"])
        if csv_path is None:
            raise DataError(
                f"nih: no Data_Entry_2017*.csv in {root}; point `root` at the ChestX-ray14 folder"
            )
        df = read_table(csv_path, "NIH Data_Entry table", dtype=str, keep_default_na=False)
        require_columns(df, _COLUMNS, csv_path, "NIH Data_Entry table")
        df = df.drop_duplicates("Image Index").reset_index(drop=True)
        names = df["Image Index"].str.strip()
        folders = names.map(image_folders(root)).fillna(str(root.absolute() / "images"))
        labels, label_names = labels_from_lists(df["Finding Labels"], str(csv_path))
        split = official_split(root, names) if o.official_split else None
        frame = pd.DataFrame(
            {
                "image_id": names,
                "path": folders + "/" + names,
                "patient_id": df["Patient ID"].str.strip(),
                "study_id": names.str.replace(r"\.png$", "", regex=True),
                "view": normalise_views(df["View Position"]).to_numpy(),
                "split": "" if split is None else split,
                "report": "",
            }
        )
        if split is not None:
            train = np.flatnonzero(split == "train")
            fraction = o.split_fractions[1] / (o.split_fractions[0] + o.split_fractions[1])
            carved = carve_patients(frame["patient_id"].to_numpy(), train, fraction, o.split_seed, salt=0x14)
            frame.loc[carved, "split"] = "validate"
        return ImageTable(frame=frame, labels=labels, label_names=label_names, kind="nih", root=root)
