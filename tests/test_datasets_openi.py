"""``openi`` on a small tree in the OpenI / IU X-ray layout (ecgen-radiology XML, NLMCXR_png)."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radtex_bench.data.kinds import DatasetSpec
from radtex_bench.data.kinds.openi import mesh_labels
from radtex_bench.data.labels import CHEXPERT_14
from radtex_bench.data.loading import load_table
from radtex_bench.data.summary import summarise
from radtex_bench.errors import DataError

XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation>
   <meta type="rr"/>
   <uId id="CXR{n}"/>
   <pmcId id="{n}"/>
   <docSource>CXR</docSource>
   <IUXRId id="{n}"/>
   <licenseType>open-access</licenseType>
   <MedlineCitation Owner="Indiana University" Status="supplied by publisher">
      <Article PubModel="Electronic">
         <ArticleTitle>Indiana University Chest X-ray Collection</ArticleTitle>
         <Abstract>
            <AbstractText Label="COMPARISON">{comparison}</AbstractText>
            <AbstractText Label="INDICATION">{indication}</AbstractText>
            <AbstractText Label="FINDINGS">{findings}</AbstractText>
            <AbstractText Label="IMPRESSION">{impression}</AbstractText>
         </Abstract>
      </Article>
   </MedlineCitation>
   <MeSH>
{mesh}
   </MeSH>
{images}
</eCitation>
"""
IMAGE = """   <parentImage id="{image_id}">
      <figureId>F1</figureId>
      <caption>Xray Chest PA and Lateral</caption>
      <panel type="single"><url>/hadoop/storage/radiology/extract/{image_id}.jpg</url></panel>
   </parentImage>"""

# n -> (MeSH major terms, image ids, findings, impression)
REPORTS = {
    1: (
        ["normal"],
        ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"],
        "The cardiac silhouette and mediastinum size are within normal limits. There are no XXXX of a pleural "
        "effusion.",
        "Normal chest x-XXXX.",
    ),
    2: (
        ["Cardiomegaly/mild", "Pulmonary Atelectasis/base/left"],
        ["CXR2_IM-0652-1001", "CXR2_IM-0652-2001"],
        "Heart size is mildly enlarged. Left basilar atelectasis, unchanged from prior.",
        "Mild cardiomegaly.",
    ),
    3: (
        ["Opacity/ribs/left", "Calcified Granuloma/lung/upper lobe/right"],
        ["CXR3_IM-1384-1001"],
        "Calcified granuloma in the right upper lobe. Sclerotic density of a left rib.",
        "No acute disease.",
    ),
    4: (["No Indexing"], ["CXR4_IM-2050-1001"], "", "Limited study."),
    5: (
        ["Catheters, Indwelling/right"],
        ["CXR5_IM-2117-1001"],
        "Right PICC line tip in the SVC.",
        "Line as above; lungs clear.",
    ),
    6: (
        ["Cardiac Shadow/enlarged", "Pleural Effusion/bilateral/small", "Airspace Disease/lung/base"],
        ["CXR6_IM-2263-1001"],
        "Enlarged cardiac silhouette, small bilateral effusions.",
        "Edema or pneumonia.",
    ),
    7: (["normal"], [], "Report without images.", "Normal."),
}
VIEWS = {
    "CXR1_IM-0001-3001": "PA",
    "CXR1_IM-0001-4001": "LL",
    "CXR2_IM-0652-1001": "PA",
    "CXR2_IM-0652-2001": "LATERAL",
    "CXR3_IM-1384-1001": "AP",
    "CXR5_IM-2117-1001": "PA",
    "CXR6_IM-2263-1001": "",
}


def _xml(n: int) -> str:
    terms, images, findings, impression = REPORTS[n]
    return XML.format(
        n=n,
        comparison="None.",
        indication="XXXX-year-old male with cough.",
        findings=findings,
        impression=impression,
        mesh="\n".join(f"      <major>{t}</major>" for t in terms),
        images="\n".join(IMAGE.format(image_id=i) for i in images),
    )


def make_openi(root: Path, packed: bool = False, metadata: bool = True) -> Path:
    """``ecgen-radiology/*.xml`` (or ``NLMCXR_reports.tgz``), ``NLMCXR_png/*.png`` and the view metadata."""
    root.mkdir(parents=True, exist_ok=True)
    if packed:
        with tarfile.open(root / "NLMCXR_reports.tgz", "w:gz") as tar:
            for n in REPORTS:
                data = _xml(n).encode()
                info = tarfile.TarInfo(f"ecgen-radiology/{n}.xml")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    else:
        (root / "ecgen-radiology").mkdir(exist_ok=True)
        for n in REPORTS:
            (root / "ecgen-radiology" / f"{n}.xml").write_text(_xml(n))
    (root / "NLMCXR_png").mkdir(exist_ok=True)
    rng = np.random.default_rng(3)
    for _, images, _, _ in REPORTS.values():
        for image_id in images:
            Image.fromarray(rng.integers(0, 255, (24, 20), dtype=np.uint8)).save(
                root / "NLMCXR_png" / f"{image_id}.png"
            )
    if metadata:
        lines = ["imageid,Accession Number,Patient ID,View Position,filename"]
        lines += [f"{i},81244959,{i.split('_')[0][3:]},{v},./{i[3:]}.dcm" for i, v in VIEWS.items()]
        with gzip.open(root / "nlmcxr_dicom_metadata.csv.gz", "wt") as f:
            f.write("\n".join(lines) + "\n")
    return root


def read(root: Path, **options):
    return DatasetSpec.from_plain({"kind": "openi", "root": str(root), **options}, "data").reader().read()


@pytest.fixture(scope="module")
def openi_root(tmp_path_factory) -> Path:
    return make_openi(tmp_path_factory.mktemp("openi") / "openi")


def _labels_of(table, image_id: str) -> dict[str, float]:
    row = table.frame.index[table.frame["image_id"] == image_id][0]
    return dict(zip(table.label_names, table.labels[row].tolist()))


def test_one_row_per_parent_image_with_views_and_reports(openi_root):
    table = read(openi_root)
    assert len(table) == 8  # the report without images adds none
    frame = table.frame.set_index("image_id")
    assert (
        frame.loc["CXR2_IM-0652-1001", "patient_id"] == "CXR2" == frame.loc["CXR2_IM-0652-1001", "study_id"]
    )
    assert Path(frame.loc["CXR2_IM-0652-1001", "path"]) == openi_root / "NLMCXR_png" / "CXR2_IM-0652-1001.png"
    # CXR1_1_IM-... in the XML matches CXR1_IM-... in the metadata; LL -> LATERAL; no view -> ""
    assert frame.loc["CXR1_1_IM-0001-3001", "view"] == "PA"
    assert frame.loc["CXR1_1_IM-0001-4001", "view"] == "LATERAL"
    assert frame.loc["CXR6_IM-2263-1001", "view"] == ""
    report = frame.loc["CXR2_IM-0652-1001", "report"]
    assert report.splitlines()[0].startswith("COMPARISON: None.")
    assert "FINDINGS: Heart size is mildly enlarged." in report and "IMPRESSION: Mild cardiomegaly." in report


def test_mesh_labels_rule(openi_root):
    table = read(openi_root)
    assert table.label_names == list(CHEXPERT_14)
    normal = _labels_of(table, "CXR1_1_IM-0001-3001")
    assert normal["No Finding"] == 1 and all(v == 0 for k, v in normal.items() if k != "No Finding")
    sick = _labels_of(table, "CXR2_IM-0652-1001")
    assert sick["Cardiomegaly"] == 1 and sick["Atelectasis"] == 1 and sick["No Finding"] == 0
    assert np.isnan(sick["Pneumothorax"])  # unmentioned in an abnormal report: missing by default
    bone = _labels_of(table, "CXR3_IM-1384-1001")  # rib opacity is not a lung opacity; granuloma unmapped
    assert np.isnan(bone["Lung Opacity"]) and bone["No Finding"] == 0
    assert all(np.isnan(v) for v in _labels_of(table, "CXR4_IM-2050-1001").values())  # No Indexing
    device = _labels_of(table, "CXR5_IM-2117-1001")
    assert device["Support Devices"] == 1 and device["No Finding"] == 1
    six = _labels_of(table, "CXR6_IM-2263-1001")
    assert (six["Cardiomegaly"], six["Pleural Effusion"], six["Lung Opacity"]) == (1, 1, 1)
    negative = _labels_of(read(openi_root, unmentioned="negative"), "CXR2_IM-0652-1001")
    assert negative["Pneumothorax"] == 0 and negative["Cardiomegaly"] == 1


def test_mesh_labels_function():
    assert mesh_labels([]) is None
    assert mesh_labels(["Technical Quality of Image Unsatisfactory "]) is None
    assert mesh_labels(["Mediastinum/prominent"]) == {"Enlarged Cardiomediastinum": 1.0, "No Finding": 0.0}
    assert mesh_labels(["Nodule/lung/base/left"])["Lung Lesion"] == 1
    assert "Lung Lesion" not in mesh_labels(["Nodule/ribs"])
    assert mesh_labels(["Thickening/pleura/apex"])["Pleural Other"] == 1
    assert mesh_labels(["Pulmonary Congestion"])["Edema"] == 1


def test_tgz_reads_like_the_unpacked_folder(openi_root, tmp_path):
    packed = read(make_openi(tmp_path / "packed", packed=True))
    unpacked = read(openi_root)
    assert packed.frame.drop(columns="path").equals(unpacked.frame.drop(columns="path"))
    assert np.array_equal(packed.labels, unpacked.labels, equal_nan=True)


def test_without_metadata_views_are_unknown(tmp_path):
    root = make_openi(tmp_path / "o", metadata=False)
    assert set(read(root).frame["view"]) == {""}
    # No view information at all: the default `views: [PA, AP]` does not filter (issue 11, kind 9).
    default = load_table(DatasetSpec.from_plain({"kind": "openi", "root": str(root)}, "data"))
    assert len(default) == len(read(root))
    table = load_table(DatasetSpec.from_plain({"kind": "openi", "root": str(root), "views": None}, "data"))
    assert set(table.frame["split"]) == {"train", "validate", "test"}


def test_report_sections_after_loading(openi_root):
    spec = DatasetSpec.from_plain(
        {
            "kind": "openi",
            "root": str(openi_root),
            "views": None,
            "report_section": "both",
            "drop_prior": True,
        },
        "data",
    )
    table = load_table(spec)
    reports = dict(zip(table.frame["image_id"], table.frame["report"]))
    assert reports["CXR1_1_IM-0001-3001"] == (
        "FINDINGS: The cardiac silhouette and mediastinum size are within "
        "normal limits. There are no of a pleural effusion. "
        "IMPRESSION: Normal chest x-ray."
    )
    assert "unchanged" not in reports["CXR2_IM-0652-1001"] and "cough" not in reports["CXR2_IM-0652-1001"]


def test_summary_and_errors(openi_root, tmp_path):
    s = summarise("openi", str(openi_root))
    assert (s["images"], s["studies"], s["patients"], s["reports"]) == (8, 6, 6, 8)
    assert s["views"] == {"PA": 3, "LATERAL": 2, "AP": 1}
    assert "splits" not in s
    assert s["labels"]["No Finding"] == {"positive": 3, "negative": 4, "uncertain": 0, "missing": 1}
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="NLMCXR_reports.tgz"):
        read(tmp_path / "empty")
