"""What "the report" is: one definition (``reports.extract``) for text objectives, the labeler and
``data summary``, on MIMIC-CXR reports with and without FINDINGS / IMPRESSION headers.

Case 02 of issue 11: a report without FINDINGS / IMPRESSION lost its findings (absorbed into the
dropped ``CLINICAL HISTORY:`` section) or leaked the request text (``INDICATION:``, the ``FINAL REPORT``
banner) into captions; a report made only of administrative sections came back whole.
"""

from __future__ import annotations

import gzip
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from radtex_bench.data.kinds import DatasetSpec
from radtex_bench.data.loading import load_table
from radtex_bench.data.reports import extract, sections
from radtex_bench.data.summary import summarise

# The three MIMIC-CXR styles of case 02, as the report files hold them (a leading space on each line,
# blank lines holding one space).
HEADED = (
    " FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n \n INDICATION:  ___F with cough, eval for pneumonia\n"
    " \n COMPARISON:  ___\n \n FINDINGS: \n \n The lungs are clear. No pleural effusion.\n \n IMPRESSION: \n"
    " \n No acute cardiopulmonary process.\n"
)
INDICATION_THEN_TEXT = (
    " FINAL REPORT\n INDICATION:  ___-year-old man with cough, eval for pneumonia.\n \n"
    " The lungs are clear. No pleural effusion or pneumothorax. Heart size is normal.\n"
)
HISTORY_THEN_TEXT = (
    " FINAL REPORT\n CHEST RADIOGRAPH PERFORMED ON ___\n \n COMPARISON:  Prior exam from ___.\n \n"
    " CLINICAL HISTORY:  Intubated patient, assess ET tube position.\n \n"
    " Endotracheal tube ends 4 cm above the carina. Moderate right pleural effusion.\n"
)
ADMIN_ONLY = (
    " FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n \n INDICATION:  ___F with cough\n \n"
    " TECHNIQUE:  PA and lateral views of the chest.\n \n COMPARISON:  ___\n"
)
EXPECTED = {
    "headed": "FINDINGS: The lungs are clear. No pleural effusion. IMPRESSION: No acute cardiopulmonary process.",
    "indication": "The lungs are clear. No pleural effusion or pneumothorax. Heart size is normal.",
    "history": "Endotracheal tube ends 4 cm above the carina. Moderate right pleural effusion.",
    "admin": "",
}


def test_the_three_mimic_styles():
    assert extract(HEADED) == EXPECTED["headed"]
    assert extract(INDICATION_THEN_TEXT) == EXPECTED["indication"]
    assert extract(HISTORY_THEN_TEXT) == EXPECTED["history"]
    # The paragraph after an administrative section's body is findings, with report_section: findings too.
    assert extract(INDICATION_THEN_TEXT, "findings") == EXPECTED["indication"]
    assert extract(HISTORY_THEN_TEXT, "findings") == EXPECTED["history"]
    assert extract(HISTORY_THEN_TEXT, "impression") == ""
    parts = sections(HISTORY_THEN_TEXT)
    assert parts["CLINICAL HISTORY"] == "Intubated patient, assess ET tube position."
    assert parts["COMPARISON"] == "Prior exam from ___."
    assert parts[""].endswith("Moderate right pleural effusion.")


@pytest.mark.parametrize(
    "report",
    [
        ADMIN_ONLY,
        # exam title line + administrative sections only
        " FINAL REPORT\n CHEST RADIOGRAPH PERFORMED ON ___\n \n COMPARISON:  ___.\n \n CLINICAL HISTORY:  Fever.\n",
        # flattened onto one line
        "INDICATION: cough, eval for pneumonia. COMPARISON: none. TECHNIQUE: PA and lateral.",
        # OpenI's joined style without FINDINGS / IMPRESSION
        "COMPARISON: None.\nINDICATION: XXXX-year-old male with chest pain.",
        # the other administrative names of MIMIC-CXR's section parser
        " REASON FOR EXAMINATION:  eval\n \n WET READ:  ___\n \n NOTIFICATION:  Dr. ___ paged.\n",
        " FINAL REPORT\n",
    ],
)
def test_a_report_of_administrative_sections_only_is_empty(report):
    assert extract(report) == ""
    assert extract(report, "findings") == extract(report, "impression") == ""
    assert extract(report, "both", drop_prior=True) == ""


def test_rules_beyond_the_case():
    # A header alone on its line: its body is the next paragraph, and the one after is findings.
    alone = (
        " FINAL REPORT\n INDICATION: \n \n ___F with cough.\n \n COMPARISON: ___\n \n The lungs are clear.\n"
    )
    assert extract(alone) == "The lungs are clear."
    # With an IMPRESSION but no FINDINGS header, the unheaded paragraph before it is the findings;
    # paragraphs after a trailing NOTIFICATION continue that notification.
    impression_only = (
        " FINAL REPORT\n HISTORY: cough\n \n PA and lateral views show clear lungs.\n \n IMPRESSION: No pneumonia.\n"
        " \n NOTIFICATION: Dr. ___ was paged.\n \n She acknowledged the result.\n"
    )
    assert (
        extract(impression_only)
        == "FINDINGS: PA and lateral views show clear lungs. IMPRESSION: No pneumonia."
    )
    # A FINDINGS header wins over an unheaded paragraph (which is request text here).
    headed = " INDICATION: cough\n \n Evaluate for pneumonia.\n \n FINDINGS: Clear lungs.\n"
    assert extract(headed) == "FINDINGS: Clear lungs."
    # A clock time is not a header; the exam title line before the first header is dropped.
    timed = " FINAL REPORT\n AP CHEST 8:03 A.M. ___\n \n HISTORY: line placement\n \n Right IJ line ends in the SVC.\n"
    assert extract(timed) == "Right IJ line ends in the SVC."
    # Reports without any header keep their text (less the banner and title lines).
    assert extract(" FINAL REPORT\n PORTABLE AP CHEST\n \n The lungs are clear.\n") == "The lungs are clear."
    assert extract("NORMAL CHEST") == "NORMAL CHEST"
    assert extract(float("nan")) == ""


# --- the dataset: a MIMIC-CXR-JPG tree with the case's styles, built here --------------------------

STYLES = [HEADED, INDICATION_THEN_TEXT, HISTORY_THEN_TEXT, ADMIN_ONLY]
SPLITS = ["train"] * 8 + ["validate"] * 2 + ["test"] * 2


def _gz(path: Path, lines: list[str]) -> None:
    with gzip.open(path, "wt") as f:
        f.write("".join(line + "\n" for line in lines))


def make_mimic(root: Path) -> Path:
    """12 studies, one PA image each; study i has report style i % 4 and Cardiomegaly i % 2."""
    rng = np.random.default_rng(0)
    meta, split, labels = (
        ["dicom_id,subject_id,study_id,ViewPosition"],
        ["dicom_id,study_id,subject_id,split"],
        [],
    )
    labels.append("subject_id,study_id,Cardiomegaly")
    for i in range(12):
        subject, study, dicom = f"{10000000 + i}", f"{50000000 + i}", f"img{i:02d}"
        folder = root / "files" / "p10" / f"p{subject}"
        (folder / f"s{study}").mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(
            folder / f"s{study}" / f"{dicom}.jpg"
        )
        (folder / f"s{study}.txt").write_text(STYLES[i % 4])
        meta.append(f"{dicom},{subject},{study},PA")
        split.append(f"{dicom},{study},{subject},{SPLITS[i]}")
        labels.append(f"{subject},{study},{float(i % 2)}")
    _gz(root / "mimic-cxr-2.0.0-metadata.csv.gz", meta)
    _gz(root / "mimic-cxr-2.0.0-split.csv.gz", split)
    _gz(root / "mimic-cxr-2.0.0-chexpert.csv.gz", labels)
    return root


@pytest.fixture
def mimic_root(tmp_path) -> Path:
    return make_mimic(tmp_path / "mimic")


def test_loaded_report_text_and_summary_count_agree(mimic_root):
    spec = DatasetSpec.from_plain({"kind": "mimic_cxr", "root": str(mimic_root)}, "data")
    table = load_table(spec)
    by_id = dict(zip(table.frame["image_id"], table.frame["report"]))
    for i in range(12):
        assert by_id[f"img{i:02d}"] == list(EXPECTED.values())[i % 4]
    # `reports` counts images whose extracted text is non-empty: the 3 admin-only studies do not count.
    summary = summarise("mimic_cxr", str(mimic_root))
    assert summary["images"] == 12 and summary["reports"] == 9
    assert summary["reports"] == sum(bool(t) for t in table.frame["report"])
    assert summarise("mimic_cxr", str(mimic_root), report_section="impression")["reports"] == 3


SPY = """
import json, os
from radtex_bench import Objective, register_objective


@register_objective("report_spy_t11")
class ReportSpy(Objective):
    needs = {"image", "report"}

    def forward(self, batch):
        with open(os.environ["SPY_OUT"], "a") as f:
            for r in batch["report"]:
                f.write(json.dumps(r) + "\\n")
        return {"loss": self.encoder(batch["image"]).mean() * 0.0}
"""


def test_a_text_objective_sees_the_findings_only(mimic_root, tmp_path, monkeypatch, registries_restored):
    """Case 02 end to end: every report string handed to a text objective, through the public plug-in API."""
    from radtex_bench.cli import main

    (tmp_path / "report_spy_t11.py").write_text(textwrap.dedent(SPY))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SPY_OUT", str(tmp_path / "seen.jsonl"))
    recipe = {
        "name": "report_spy",
        "data": {"pretrain": {"kind": "mimic_cxr", "root": str(mimic_root)}, "pathologies": ["Cardiomegaly"]},
        "encoder": {"name": "resnet18", "image_size": 32},
        "objectives": [{"name": "report_spy_t11", "train": {"epochs": 1, "max_steps": 1, "batch_size": 6}}],
        "evaluation": {"budgets": [2], "seeds": 1, "bootstrap": 0},
        "plugins": ["report_spy_t11"],
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["--quiet", "run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run")]) == 0
    seen = {json.loads(line) for line in (tmp_path / "seen.jsonl").read_text().splitlines()}
    # The 6 training images with a non-admin report (styles 0-2); the 2 admin-only ones are left out.
    assert seen == {EXPECTED["headed"], EXPECTED["indication"], EXPECTED["history"]}
    log = (tmp_path / "run" / "run.log").read_text()
    assert "2 of 8 pretraining images have no report" in log
