"""``mimic_cxr`` on a small tree in the MIMIC-CXR-JPG layout (+ MIMIC-CXR reports)."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radtex_bench.data.kinds import DatasetSpec
from radtex_bench.data.loading import load_table
from radtex_bench.data.summary import summarise
from radtex_bench.errors import DataError

LABELS = [
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
]
META_HEADER = (
    "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,StudyDate,"
    "StudyTime,ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,"
    "PatientOrientationCodeSequence_CodeMeaning"
)
# (dicom_id, subject, study, ViewPosition, split)
IMAGES = [
    ("02aa804e-bde0afdd-112c0b34-7bc16630-4e384014", "10000032", "50414267", "PA", "train"),
    ("174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962", "10000032", "50414267", "LATERAL", "train"),
    ("2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab", "10000032", "53189527", "AP", "train"),
    ("68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714", "10000764", "57375967", "PA", "validate"),
    ("096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4", "10000764", "57375967", "LL", "validate"),
    ("8959e402-2175d68d-edba5a6c-520a5ba4-2d1e5ab6", "11000011", "51234567", "AP", "train"),
    ("ea030e7a-2e3b1346-bc518786-7a8fd698-f673b44c", "12000005", "52222222", "PA", "test"),
    ("f0e7a4b2-11111111-22222222-33333333-44444444", "12000005", "52222222", "", "test"),
]
# study -> {label: value}; study 51234567 has no labeler row
CHEXPERT = {
    "50414267": {"Cardiomegaly": "1.0", "Edema": "-1.0", "Pleural Effusion": "0.0"},
    "53189527": {"No Finding": "1.0"},
    "57375967": {"Pneumothorax": "1.0", "Support Devices": "1.0", "Atelectasis": "-1.0"},
    "52222222": {"Pleural Effusion": "1.0", "Cardiomegaly": "0.0"},
}
NEGBIO = {"50414267": {"Cardiomegaly": "1.0", "Edema": "1.0"}}
SUBJECT_OF = {study: subject for _, subject, study, _, _ in IMAGES}

REPORT_50414267 = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  Chest radiograph from ___.

 FINDINGS:

 The heart is mildly enlarged.  Mild interstitial edema is possibly present.  No
 pleural effusion or pneumothorax.  The cardiomediastinal silhouette is unchanged
 compared to the prior study.

 IMPRESSION:

 Mild cardiomegaly; possible mild interstitial edema.
"""
REPORTS = {
    "50414267": REPORT_50414267,
    "53189527": " FINAL REPORT\n EXAMINATION: PORTABLE CHEST\n\n FINDINGS:\n Lungs are clear.\n\n IMPRESSION:\n"
    " No acute cardiopulmonary process.\n",
    "57375967": " FINAL REPORT\n INDICATION: Chest tube placement.\n\n FINDINGS AND IMPRESSION:\n Right apical"
    " pneumothorax, smaller than on ___. Right chest tube in place.\n",
    "52222222": " FINAL REPORT\n FINDINGS: Small left pleural effusion. Heart size is normal.\n"
    " IMPRESSION: Small left effusion, interval increase.\n",
    # 51234567: no report file
}


def _gz_csv(path: Path, header: str, rows: list[str]) -> None:
    with gzip.open(path, "wt") as f:
        f.write(header + "\n" + "".join(r + "\n" for r in rows))


def _labels_rows(values: dict[str, dict[str, str]]) -> list[str]:
    return [
        ",".join([SUBJECT_OF[study], study] + [v.get(name, "") for name in LABELS])
        for study, v in values.items()
    ]


def make_mimic(root: Path, reports: str = "same") -> Path:
    """MIMIC-CXR-JPG tree; ``reports``: ``same`` (txt under root), ``zip`` (mimic-cxr-reports.zip in a
    separate folder ``root/../mimic-cxr``), ``none``."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    meta_rows = []
    for dicom, subject, study, view, _ in IMAGES:
        folder = root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (30, 24), dtype=np.uint8)).save(folder / f"{dicom}.jpg")
        meta_rows.append(
            f"{dicom},{subject},{study},CHEST (PA AND LAT),{view},3056,2544,21800506,213014.531,"
            f"CHEST (PA AND LAT),postero-anterior,Erect"
        )
    _gz_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", META_HEADER, meta_rows)
    _gz_csv(
        root / "mimic-cxr-2.0.0-split.csv.gz",
        "dicom_id,study_id,subject_id,split",
        [f"{d},{st},{su},{sp}" for d, su, st, _, sp in IMAGES],
    )
    _gz_csv(
        root / "mimic-cxr-2.0.0-chexpert.csv.gz",
        "subject_id,study_id," + ",".join(LABELS),
        _labels_rows(CHEXPERT),
    )
    _gz_csv(
        root / "mimic-cxr-2.0.0-negbio.csv.gz",
        "subject_id,study_id," + ",".join(LABELS),
        _labels_rows(NEGBIO),
    )
    if reports == "same":
        for study, text in REPORTS.items():
            subject = SUBJECT_OF[study]
            (root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt").write_text(text)
    elif reports == "zip":
        other = root.parent / "mimic-cxr"
        other.mkdir(exist_ok=True)
        with zipfile.ZipFile(other / "mimic-cxr-reports.zip", "w") as zf:
            for study, text in REPORTS.items():
                subject = SUBJECT_OF[study]
                zf.writestr(f"files/p{subject[:2]}/p{subject}/s{study}.txt", text)
    return root


def read(root: Path, **options):
    return DatasetSpec.from_plain({"kind": "mimic_cxr", "root": str(root), **options}, "data").reader().read()


@pytest.fixture(scope="module")
def mimic_root(tmp_path_factory) -> Path:
    return make_mimic(tmp_path_factory.mktemp("mimic") / "mimic-cxr-jpg")


def test_every_listed_image_with_official_split_and_views(mimic_root):
    table = read(mimic_root)
    assert len(table) == len(IMAGES)
    frame = table.frame.set_index("image_id")
    for dicom, subject, study, view, split in IMAGES:
        row = frame.loc[dicom]
        assert (row.patient_id, row.study_id, row.split) == (subject, study, split)
        assert row.view == {"LL": "LATERAL"}.get(view, view)
        assert Path(row.path).is_file()
    assert table.label_names == LABELS


def test_labels_are_per_study_and_keep_four_states(mimic_root):
    table = read(mimic_root)
    col = {n: j for j, n in enumerate(table.label_names)}
    ids = table.frame["image_id"].tolist()
    pa, lat = ids.index(IMAGES[0][0]), ids.index(IMAGES[1][0])
    assert np.array_equal(table.labels[pa], table.labels[lat], equal_nan=True)  # same study, same labels
    assert table.labels[pa, col["Cardiomegaly"]] == 1
    assert table.labels[pa, col["Edema"]] == -1
    assert table.labels[pa, col["Pleural Effusion"]] == 0
    assert np.isnan(table.labels[pa, col["Pneumonia"]])
    no_row = ids.index(IMAGES[5][0])  # study without a labeler row: everything missing
    assert np.isnan(table.labels[no_row]).all()
    assert table.labels[ids.index(IMAGES[2][0]), col["No Finding"]] == 1


def test_negbio_labels_are_selectable(mimic_root):
    table = read(mimic_root, labeler="negbio", read_reports=False)
    edema = table.labels[:, table.label_names.index("Edema")]
    assert edema[0] == 1 and np.isnan(edema[2])


def test_reports_under_the_same_root_and_sections(mimic_root):
    table = read(mimic_root)
    reports = dict(zip(table.frame["image_id"], table.frame["report"]))
    assert "FINDINGS:" in reports[IMAGES[0][0]] and reports[IMAGES[0][0]] == reports[IMAGES[1][0]]
    assert reports[IMAGES[5][0]] == ""  # no report file for that study
    spec = DatasetSpec.from_plain(
        {
            "kind": "mimic_cxr",
            "root": str(mimic_root),
            "views": None,
            "report_section": "both",
            "drop_prior": True,
        },
        "data",
    )
    loaded = load_table(spec)
    text = dict(zip(loaded.frame["image_id"], loaded.frame["report"]))[IMAGES[0][0]]
    assert text.startswith("FINDINGS: The heart is mildly enlarged.")
    assert "IMPRESSION: Mild cardiomegaly" in text
    assert "INDICATION" not in text and "ascites" not in text and "___" not in text
    assert "unchanged" not in text  # drop_prior
    combined = dict(zip(loaded.frame["image_id"], loaded.frame["report"]))[IMAGES[3][0]]
    assert combined == "FINDINGS: Right chest tube in place."  # "smaller than on ___" refers to a prior


def test_reports_from_a_zip_under_reports_root(tmp_path):
    root = make_mimic(tmp_path / "jpg", reports="zip")
    table = read(root, reports_root=str(tmp_path / "mimic-cxr"))
    assert (table.frame["report"] != "").sum() == 7
    with pytest.raises(DataError, match="reports_root"):
        read(root, reports_root=str(tmp_path / "nowhere"))


def test_missing_reports_warn_and_leave_text_empty(tmp_path, caplog):
    root = make_mimic(tmp_path / "jpg", reports="none")
    table = read(root)
    assert (table.frame["report"] == "").all()
    assert "reports_root" in caplog.text


def test_loading_keeps_frontal_images_and_patients_disjoint(mimic_root):
    table = load_table(DatasetSpec.from_plain({"kind": "mimic_cxr", "root": str(mimic_root)}, "data"))
    assert set(table.frame["view"]) == {"PA", "AP"}
    assert len(table) == 5
    by_patient = table.frame.groupby("patient_id")["split"].nunique()
    assert (by_patient == 1).all()


def test_summary_counts(mimic_root):
    s = summarise("mimic_cxr", str(mimic_root))
    assert (s["images"], s["studies"], s["patients"], s["reports"]) == (8, 5, 4, 7)
    assert s["views"] == {"PA": 3, "AP": 2, "LATERAL": 2}
    assert s["splits"] == {"train": 4, "validate": 2, "test": 2}
    assert s["labels"]["Cardiomegaly"] == {"positive": 2, "negative": 2, "uncertain": 0, "missing": 4}


def test_errors_name_the_file_and_fix(tmp_path, mimic_root):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="mimic-cxr-2.0.0-metadata.csv.gz.*MIMIC-CXR-JPG folder"):
        read(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        read(tmp_path / "nowhere")
    root = make_mimic(tmp_path / "short", reports="none")
    _gz_csv(
        root / "mimic-cxr-2.0.0-split.csv.gz",
        "dicom_id,study_id,subject_id,split",
        [f"{d},{st},{su},{sp}" for d, su, st, _, sp in IMAGES[:-1]],
    )
    with pytest.raises(DataError, match="no split row"):
        read(root)
    assert set(read(root, official_split=False).frame["split"]) == {""}
