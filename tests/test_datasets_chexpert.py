"""``chexpert`` on a small tree in the CheXpert-v1.0-small layout."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radtex_bench.data.kinds import DatasetSpec
from radtex_bench.data.loading import load_table
from radtex_bench.data.summary import summarise
from radtex_bench.errors import DataError

HEADER = [
    "Path",
    "Sex",
    "Age",
    "Frontal/Lateral",
    "AP/PA",
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
]
PREFIX = "CheXpert-v1.0-small/"


def _rows(split: str, patients: range, rng: np.random.Generator, prefix: str) -> list[list[str]]:
    rows = []
    for p in patients:
        for study in (1, 2) if p % 3 == 0 else (1,):
            values = [str(v) for v in rng.choice(["1.0", "0.0", "-1.0", ""], size=14)]
            values[0] = "1.0" if p % 4 == 0 else ""  # No Finding: 1 or blank, as CheXpert ships it
            base = f"{prefix}{split}/patient{p:05d}/study{study}"
            ap = ["AP", "PA", "LL"][p % 3]
            rows.append([f"{base}/view1_frontal.jpg", "Female", "68", "Frontal", ap, *values])
            if p % 2 == 0:
                rows.append([f"{base}/view2_lateral.jpg", "Female", "68", "Lateral", "", *values])
    return rows


def make_chexpert(
    parent: Path, n_train: int = 30, n_valid: int = 6, prefix: str = PREFIX, valid: bool = True
) -> Path:
    """``parent/CheXpert-v1.0-small/{train,valid}.csv`` + images; returns the dataset folder."""
    root = parent / "CheXpert-v1.0-small"
    rng = np.random.default_rng(1)
    tables = {"train": _rows("train", range(1, n_train + 1), rng, prefix)}
    if valid:
        tables["valid"] = _rows("valid", range(64541, 64541 + n_valid), rng, prefix)
    for split, rows in tables.items():
        root.mkdir(parents=True, exist_ok=True)
        with open(root / f"{split}.csv", "w", newline="") as f:
            csv.writer(f).writerows([HEADER, *rows])
        for row in rows:
            path = root / row[0].removeprefix(PREFIX)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (20, 16), dtype=np.uint8)).save(path)
    return root


def read(root: Path, **options):
    return DatasetSpec.from_plain({"kind": "chexpert", "root": str(root), **options}, "data").reader().read()


@pytest.fixture(scope="module")
def chexpert_root(tmp_path_factory) -> Path:
    return make_chexpert(tmp_path_factory.mktemp("chexpert"))


def _patients_by_split(table) -> dict[str, set[str]]:
    return {
        s: set(table.frame["patient_id"][table.frame["split"] == s]) for s in ("train", "validate", "test")
    }


def test_paths_ids_views_and_labels(chexpert_root):
    table = read(chexpert_root)
    first = table.frame.iloc[0]
    assert first.image_id == "train/patient00001/study1/view1_frontal.jpg"
    assert first.path == str(chexpert_root / first.image_id) and Path(first.path).is_file()
    assert (first.patient_id, first.study_id) == ("patient00001", "patient00001/study1")
    views = dict(zip(table.frame["image_id"], table.frame["view"]))
    assert views["train/patient00001/study1/view1_frontal.jpg"] == "PA"
    assert views["train/patient00003/study2/view1_frontal.jpg"] == "AP"
    assert views["train/patient00002/study1/view2_lateral.jpg"] == "LATERAL"
    assert views["train/patient00002/study1/view1_frontal.jpg"] == "FRONTAL"  # frontal with AP/PA "LL"
    assert table.label_names == HEADER[5:]
    raw = list(csv.reader(open(chexpert_root / "train.csv")))[1:]
    expected = np.array([[float(v) if v else np.nan for v in r[5:]] for r in raw], dtype=np.float32)
    assert np.array_equal(table.labels[: len(raw)], expected, equal_nan=True)
    assert set(np.unique(table.labels[~np.isnan(table.labels)])) <= {-1.0, 0.0, 1.0}


def test_valid_is_test_and_validate_is_carved_from_train_by_patient(chexpert_root):
    table = read(chexpert_root)
    frame = table.frame
    assert set(frame["split"][frame["image_id"].str.startswith("valid/")]) == {"test"}
    train_rows = frame["image_id"].str.startswith("train/")
    assert set(frame["split"][train_rows]) == {"train", "validate"}
    patients = _patients_by_split(table)
    assert not (patients["train"] & patients["validate"]) and not (patients["train"] & patients["test"])
    # 0.1 / (0.7 + 0.1) of 30 train patients, rounded
    assert len(patients["validate"]) == 4
    again = read(chexpert_root)
    assert again.frame["split"].tolist() == frame["split"].tolist()  # deterministic
    other = read(chexpert_root, split_seed=1)
    assert other.frame["split"].tolist() != frame["split"].tolist()


def test_valid_as_validate_carves_test_instead(chexpert_root):
    table = read(chexpert_root, valid_split="validate")
    frame = table.frame
    assert set(frame["split"][frame["image_id"].str.startswith("valid/")]) == {"validate"}
    patients = _patients_by_split(table)
    assert len(patients["test"]) == 7  # 0.2 / 0.9 of 30
    assert not (patients["train"] & patients["test"])


def test_parent_folder_and_paths_without_prefix(tmp_path):
    root = make_chexpert(tmp_path, n_train=4, n_valid=2, prefix="")
    direct, parent = read(root), read(tmp_path)
    assert direct.frame["path"].tolist() == parent.frame["path"].tolist()
    assert direct.frame["image_id"].iloc[0] == "train/patient00001/study1/view1_frontal.jpg"


def test_gzipped_tables_and_no_valid_means_no_official_split(tmp_path):
    root = make_chexpert(tmp_path, n_train=12, valid=False)
    data = (root / "train.csv").read_bytes()
    (root / "train.csv").unlink()
    with gzip.open(root / "train.csv.gz", "wb") as f:
        f.write(data)
    table = read(root)
    assert set(table.frame["split"]) == {""}
    loaded = load_table(
        DatasetSpec.from_plain({"kind": "chexpert", "root": str(root), "views": None}, "data")
    )
    assert set(loaded.frame["split"]) == {"train", "validate", "test"}
    assert "splits" not in summarise("chexpert", str(root))


def test_summary(chexpert_root):
    s = summarise("chexpert", str(chexpert_root))
    table = read(chexpert_root)
    assert s["images"] == len(table) and s["reports"] == 0
    assert s["patients"] == 36 and s["studies"] == 36 + 12
    assert set(s["views"]) == {"AP", "PA", "LATERAL", "FRONTAL"}
    assert s["splits"]["test"] == int((table.frame["split"] == "test").sum()) > 0
    assert s["labels"]["No Finding"]["negative"] == 0  # CheXpert ships 1 or blank


def test_paths_must_stay_inside_the_root(tmp_path):
    root = make_chexpert(tmp_path, n_train=2, n_valid=1)
    lines = (root / "train.csv").read_text().splitlines()
    path, rest = lines[1].split(",", 1)
    lines[1] = PREFIX + "../../outside/" + path.removeprefix(PREFIX + "train/") + "," + rest
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="outside the dataset folder"):
        read(root)
    table = read(root, allow_absolute_paths=True)
    assert len(table) > 0


def test_missing_tables_are_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no train.csv or valid.csv"):
        read(tmp_path)
