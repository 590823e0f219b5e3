"""``manifest``: a CSV of your own (paths relative to the CSV, labels, views, splits)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radtex_bench.data.kinds import DatasetSpec
from radtex_bench.data.summary import summarise
from radtex_bench.errors import DataError


def _write(
    root: Path,
    rows: list[str],
    header: str = "image_path,patient_id,study_id,view,split,report,Effusion,Edema",
):
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return root


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)


def read(root: Path, **options):
    return DatasetSpec.from_plain({"kind": "manifest", "root": str(root), **options}, "data").reader().read()


def test_columns_labels_views_and_defaults(tmp_path):
    root = _write(
        tmp_path / "ds",
        [
            'a.png,p1,,PA,train,"FINDINGS: clear.",1,-1',
            "b.png,p1,s2,ll,Val,,0,",
            "sub/c.png,p2,s3,AP,test,,1.0,0.0",
        ],
    )
    table = read(root)
    assert table.label_names == ["Pleural Effusion", "Edema"]  # NIH spelling mapped to CheXpert's
    assert table.frame["view"].tolist() == ["PA", "LATERAL", "AP"]
    assert table.frame["split"].tolist() == ["train", "validate", "test"]
    assert table.frame["study_id"].tolist() == ["p1", "s2", "s3"]  # blank study -> the patient
    assert table.frame["image_id"].tolist() == ["a.png", "b.png", "sub/c.png"]
    assert table.frame["path"][2] == os.path.join(os.path.abspath(root), "sub", "c.png")
    assert np.array_equal(table.labels, [[1, -1], [0, np.nan], [1, 0]], equal_nan=True)
    assert summarise("manifest", str(root / "manifest.csv"))["splits"] == {
        "train": 1,
        "validate": 1,
        "test": 1,
    }


def test_paths_stay_inside_unless_allowed(tmp_path):
    root = _write(tmp_path / "ds", ["../outside.png,p1,,PA,,,1,0"])
    with pytest.raises(DataError, match="outside the dataset folder.*allow_absolute_paths"):
        read(root)
    assert read(root, allow_absolute_paths=True).frame["path"][0] == str(tmp_path / "outside.png")
    root = _write(tmp_path / "abs", [f"{tmp_path / 'x.png'},p1,,PA,,,1,0"])
    with pytest.raises(DataError, match="is absolute"):
        read(root)


def test_symlinked_images_inside_the_folder_are_fine(tmp_path):
    _image(tmp_path / "elsewhere" / "real.png")
    root = _write(tmp_path / "ds", ["link.png,p1,,PA,,,1,0"])
    (root / "link.png").symlink_to(tmp_path / "elsewhere" / "real.png")
    assert read(root).frame["path"][0] == str(root.absolute() / "link.png")


def test_bad_values_name_the_row_and_column(tmp_path):
    root = _write(tmp_path / "ds", ["a.png,p1,,PA,,,1,0", "b.png,p2,,PA,,,yes,0"])
    with pytest.raises(DataError, match=r"column 'Effusion' holds 'yes' \(row 3\)"):
        read(root)
    root = _write(tmp_path / "ds2", ["a.png,p1,,PA,,,1,0", "a.png,p2,,PA,,,1,0"])
    with pytest.raises(DataError, match="appears twice"):
        read(root)
    root = _write(tmp_path / "ds3", ["a.png,,,PA,,,1,0"])
    with pytest.raises(DataError, match="row 2 has an empty patient_id"):
        read(root)
    root = _write(tmp_path / "ds4", ["a.png,p1,,PA,holdout,,1,0"])
    with pytest.raises(DataError, match="unknown split 'holdout'"):
        read(root)


@pytest.mark.parametrize(
    "content, fragment",
    [
        (
            b"image_path,patient_id,report\nx.png,p1,caf\xe9\n",
            "it is not UTF-8 text (is it a CSV? an image?); save it",
        ),
        (b"", "is empty; it needs a header row and one row per image"),
        (b'image_path,patient_id\n"a.png,p1\nb.png,p2\n', "is not a well-formed CSV (Error tokenizing data"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "it is not UTF-8 text (is it a CSV? an image?)"),
    ],
)
def test_an_unreadable_manifest_is_one_line_with_the_fix(tmp_path, capsys, content, fragment):
    from radtex_bench.cli import main

    path = tmp_path / "m.csv"
    path.write_bytes(content)
    assert main(["data", "summary", "manifest", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err and err.count("\n") == 1 and "Traceback" not in err
