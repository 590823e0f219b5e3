"""``nih`` on a small tree in the ChestX-ray14 layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radtex_bench.data.kinds import DatasetSpec
from radtex_bench.data.loading import load_table
from radtex_bench.data.summary import summarise
from radtex_bench.errors import DataError

HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
FINDINGS = [
    "Cardiomegaly",
    "Cardiomegaly|Emphysema",
    "Cardiomegaly|Effusion",
    "No Finding",
    "Hernia",
    "Effusion|Infiltration|Pleural_Thickening",
    "Mass|Nodule",
    "No Finding",
    "Atelectasis|Pneumothorax",
]


def make_nih(root: Path, n_patients: int = 24, lists: bool = False, split_folders: bool = True) -> Path:
    """``Data_Entry_2017_v2020.csv`` + images in ``images_00N/images/`` (Kaggle style) or ``images/``."""
    rng = np.random.default_rng(2)
    rows, names = [], []
    for p in range(1, n_patients + 1):
        for k in range(1 + p % 3):
            name = f"{p:08d}_{k:03d}.png"
            labels = FINDINGS[(p + k) % len(FINDINGS)]
            view = "PA" if (p + k) % 4 else "AP"
            rows.append(f"{name},{labels},{k},{p},{40 + p},M,{view},2682,2749,0.143,0.143")
            names.append(name)
    root.mkdir(parents=True, exist_ok=True)
    (root / "Data_Entry_2017_v2020.csv").write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    for i, name in enumerate(names):
        folder = root / (f"images_{1 + i * 2 // len(names):03d}/images" if split_folders else "images")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / name)
    if lists:
        test = [n for n in names if int(n[:8]) % 5 == 0]
        (root / "test_list.txt").write_text("\n".join(test) + "\n")
        (root / "train_val_list.txt").write_text("\n".join(n for n in names if n not in test) + "\n")
    return root


def read(root: Path, **options):
    return DatasetSpec.from_plain({"kind": "nih", "root": str(root), **options}, "data").reader().read()


@pytest.fixture(scope="module")
def nih_root(tmp_path_factory) -> Path:
    return make_nih(tmp_path_factory.mktemp("nih") / "ChestX-ray14")


def test_images_found_in_every_images_folder(nih_root):
    table = read(nih_root)
    assert len(table) == sum(1 + p % 3 for p in range(1, 25))
    assert all(Path(p).is_file() for p in table.frame["path"])
    assert {Path(p).parent.parent.name for p in table.frame["path"]} == {"images_001", "images_002"}
    first = table.frame.iloc[0]
    assert (first.image_id, first.patient_id, first.study_id, first.view) == (
        "00000001_000.png",
        "1",
        "00000001_000",
        "PA",
    )
    assert set(table.frame["report"]) == {""}


def test_finding_labels_positive_others_negative(nih_root):
    table = read(nih_root)
    names = table.label_names
    assert "Pleural Effusion" in names and "Effusion" not in names
    assert {"Infiltration", "Mass", "Nodule", "Pleural Thickening", "Emphysema", "Hernia"} <= set(names)
    assert "Lung Opacity" not in names and "Enlarged Cardiomediastinum" not in names
    assert not np.isnan(table.labels).any() and not (table.labels == -1).any()  # NIH: no uncertain/missing
    row = table.frame.index[table.frame["image_id"] == "00000004_001.png"][
        0
    ]  # Effusion|Infiltration|Pleural_Thickening
    positives = {n for n, v in zip(names, table.labels[row]) if v == 1}
    assert positives == {"Pleural Effusion", "Infiltration", "Pleural Thickening"}
    no_finding = table.labels[:, names.index("No Finding")] == 1
    assert (table.labels[no_finding].sum(axis=1) == 1).all()  # No Finding is alone
    # the 9 RadTex pathologies that NIH lacks read as missing
    assert np.isnan(table.label_matrix(["Lung Opacity"], "zeros")).all()


def test_no_lists_no_official_split(nih_root):
    assert set(read(nih_root).frame["split"]) == {""}
    assert "splits" not in summarise("nih", str(nih_root))
    table = load_table(DatasetSpec.from_plain({"kind": "nih", "root": str(nih_root)}, "data"))
    assert set(table.frame["split"]) == {"train", "validate", "test"}


def test_official_lists_and_validate_carved_by_patient(tmp_path):
    root = make_nih(tmp_path / "nih", n_patients=40, lists=True, split_folders=False)
    table = read(root)
    frame = table.frame
    test_names = set((root / "test_list.txt").read_text().split())
    assert set(frame["image_id"][frame["split"] == "test"]) == test_names
    by = {s: set(frame["patient_id"][frame["split"] == s]) for s in ("train", "validate", "test")}
    assert (
        by["validate"]
        and not (by["train"] & by["validate"])
        and not (by["test"] & (by["train"] | by["validate"]))
    )
    assert len(by["validate"]) == round(0.125 * 32)  # 0.1 / (0.7 + 0.1) of the train_val patients
    assert read(root).frame["split"].tolist() == frame["split"].tolist()
    s = summarise("nih", str(root))
    assert s["splits"] == {k: int((frame["split"] == k).sum()) for k in ("train", "validate", "test")}
    assert set(read(root, official_split=False).frame["split"]) == {""}


def test_list_errors(tmp_path):
    root = make_nih(tmp_path / "nih", n_patients=10, lists=True, split_folders=False)
    (root / "test_list.txt").unlink()
    with pytest.raises(DataError, match="test_list.txt is not"):
        read(root)
    (root / "test_list.txt").write_text("00000005_000.png\n")
    with pytest.raises(DataError, match="in neither"):
        read(root)


def test_missing_images_are_listed_not_fatal_until_loading(tmp_path):
    root = make_nih(tmp_path / "nih", n_patients=6, split_folders=False)
    gone = next((root / "images").glob("*.png"))
    gone.unlink()
    table = read(root)
    assert str(root.absolute() / "images" / gone.name) in set(table.frame["path"])
    assert summarise("nih", str(root))["images"] == len(table) - 1
    spec = DatasetSpec.from_plain({"kind": "nih", "root": str(root), "views": None}, "data")
    with pytest.raises(DataError, match="not found"):
        load_table(spec)
    assert len(load_table(spec, on_bad_image="skip")) == len(table) - 1


def test_missing_csv_and_unknown_finding(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="Data_Entry_2017"):
        read(tmp_path / "empty")
    root = make_nih(tmp_path / "nih", n_patients=2, split_folders=False)
    csv = root / "Data_Entry_2017_v2020.csv"
    csv.write_text(csv.read_text().replace("Cardiomegaly", "Cardiomegally", 1))
    with pytest.raises(DataError, match="Cardiomegally"):
        read(root)
