"""Loaders on real chest X-ray data in ``../shared/data`` (skipped cleanly where it is absent).

Real NIH ChestX-ray14 images and labels, the real OpenI report XMLs, the real CheXpert label table,
real radiographs in PNG / JPEG / DICOM, and real image-text pairs (COVID-19 collection).
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from radtex_bench.data.cache import PixelCache, prepare
from radtex_bench.data.images import load_square, read_grey
from radtex_bench.data.kinds import DatasetSpec
from radtex_bench.data.loading import load_table
from radtex_bench.data.reports import extract
from radtex_bench.data.summary import summarise

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path


def read(kind: str, root: Path, **options):
    return DatasetSpec.from_plain({"kind": kind, "root": str(root), **options}, "data").reader().read()


def test_nih_sample_images_labels_and_cache(tmp_path):
    root = shared("nih14_sample")
    s = summarise("nih", str(root))
    assert (s["images"], s["studies"], s["patients"], s["reports"]) == (1000, 1000, 264, 0)
    assert sum(s["views"].values()) == 1000 and set(s["views"]) <= {"PA", "AP"}
    assert "splits" not in s  # the sample ships no split lists
    positives = {name: c["positive"] for name, c in s["labels"].items()}
    assert positives == {
        "No Finding": 499,
        "Pleural Effusion": 170,
        "Infiltration": 162,
        "Atelectasis": 95,
        "Cardiomegaly": 83,
        "Consolidation": 42,
        "Pneumothorax": 40,
        "Nodule": 39,
        "Emphysema": 37,
        "Mass": 35,
        "Fibrosis": 32,
        "Edema": 31,
        "Pleural Thickening": 29,
        "Pneumonia": 11,
        "Hernia": 9,
    }
    assert all(c["uncertain"] == 0 and c["missing"] == 0 for c in s["labels"].values())
    result = prepare("nih", str(root), tmp_path / "cache", size=32, workers=0)
    assert (result.cached, result.skipped) == (1000, 0)
    table = load_table(
        DatasetSpec.from_plain({"kind": "nih", "root": str(root), "cache": str(tmp_path / "cache")}, "data")
    )
    assert set(table.frame["split"]) == {"train", "validate", "test"}
    by = table.frame.groupby("patient_id")["split"].nunique()
    assert (by == 1).all()
    cache = PixelCache.open(tmp_path / "cache")
    first = table.frame.iloc[0]
    assert np.array_equal(cache.pixels(cache.row(first.image_id)), load_square(Path(first.path), 32))


@pytest.fixture(scope="module")
def openi_table():
    return read("openi", shared("openi_reports"), views=None)


def test_openi_real_reports_and_mesh_labels(openi_table):
    table = openi_table
    archive = shared("openi_reports", "NLMCXR_reports.tgz")
    with tarfile.open(archive) as tar:
        n_xml = sum(1 for m in tar if m.name.endswith(".xml"))
    assert n_xml == 3955
    assert len(table) == 7470 and table.frame["image_id"].is_unique
    assert table.frame["patient_id"].nunique() == 3955 - 104  # 104 reports name no image
    views = table.frame["view"].value_counts().to_dict()
    assert views["PA"] == 3593 and views["AP"] == 423 and views["LATERAL"] == 717 + 119 + 29 + 2
    names = table.label_names
    nf = table.labels[:, names.index("No Finding")]
    normal = nf == 1
    assert 2500 < normal.sum() < 3100
    others = np.delete(table.labels, names.index("No Finding"), axis=1)
    assert (others[normal & ~(table.labels[:, names.index("Support Devices")] == 1)] != 1).all()
    cardio = table.labels[:, names.index("Cardiomegaly")]
    assert (cardio == 1).sum() > 500 and np.isnan(cardio[nf == 0]).sum() > 0


def test_openi_real_report_sections(openi_table):
    reports = openi_table.frame["report"].drop_duplicates()
    both = [extract(r, "both") for r in reports]
    assert sum(t.startswith("FINDINGS:") for t in both) > 0.8 * len(both)
    assert sum("IMPRESSION:" in t for t in both) > 0.9 * len(both)
    assert not any("XXXX" in t or "INDICATION" in t or "COMPARISON" in t for t in both)
    impressions = [extract(r, "impression") for r in reports]
    assert sum(bool(t) for t in impressions) > 0.95 * len(impressions)
    dropped = [extract(r, "both", drop_prior=True) for r in reports]
    assert not any("unchanged" in t.lower() or "compared to" in t.lower() for t in dropped)
    assert sum(len(t) for t in dropped) < sum(len(t) for t in both)


def test_openi_every_real_xml_by_report_section():
    """The counts docs/datasets.md states for all 3,955 XMLs (including the 104 that name no image)."""
    from radtex_bench.data.kinds.openi import _xml_documents, parse_report

    reports = [parse_report(xml)[1] for _, xml in _xml_documents(shared("openi_reports"))]
    assert len(reports) == 3955
    empty = {
        section: sum(not extract(r, section) for r in reports)
        for section in ("both", "findings", "impression")
    }
    assert empty == {"both": 28, "findings": 530, "impression": 34}
    # The 28 with neither FINDINGS nor IMPRESSION have no text in any section: nothing is lost.
    assert all(r == "" for r in reports if not extract(r, "both"))


def test_chexpert_real_label_table():
    root = shared("chexpert_labels")
    table = read("chexpert", root)  # reads train.csv.gz in place; no valid.csv: no official split
    assert len(table) == 223414
    assert table.frame["patient_id"].nunique() == 64540
    assert set(table.frame["split"]) == {""}
    assert table.label_names[0] == "No Finding" and len(table.label_names) == 14
    nf = table.labels[:, 0]
    assert (nf == 1).sum() == 22381 and np.isnan(nf).sum() == 223414 - 22381
    values = np.unique(table.labels[~np.isnan(table.labels)])
    assert set(values) == {-1.0, 0.0, 1.0}
    views = table.frame["view"].value_counts().to_dict()
    assert views["LATERAL"] == 32387 and views["AP"] == 161590 and views["PA"] == 29420
    assert table.frame["image_id"].iloc[0] == "train/patient00001/study1/view1_frontal.jpg"


def test_real_radiograph_files():
    samples = shared("samples")
    for name in ("00000001_000.png", "00027426_000.png", "h0001.png", "tb0005.png"):
        out = read_grey(samples / name)
        assert out.dtype == np.uint8 and out.shape == (512, 512) and out.std() > 20
    modes = {p.name: Image.open(p).mode for p in samples.glob("*.png")}
    assert not any(m.startswith("I") for m in modes.values())  # the samples are 8-bit (16-bit: test_images)
    big = load_square(samples / "covid-19-pneumonia-58-prior.jpg", 224)  # 2373 px JPEG, decoded reduced
    assert big.shape == (224, 224) and big.std() > 20
    assert read_grey(samples / "16747_3_1.jpg").shape == (885, 1036)


def test_real_dicom_files():
    pytest.importorskip("pydicom")
    samples = shared("samples")
    mono2 = read_grey(samples / "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm")
    mono1 = read_grey(samples / "Fake_MONOHR1.dcm")  # same pixels flagged MONOCHROME1: shown inverted
    assert mono2.shape == mono1.shape == (1024, 1024)
    assert np.abs(255 - mono1.astype(int) - mono2).max() <= 1
    assert load_square(samples / "Fake_MONOHR1.dcm", 64).shape == (64, 64)


def test_real_image_text_pairs_as_a_manifest(tmp_path):
    root = shared("covid_notes")
    meta = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
    meta = meta[meta["clinical_notes"] != ""].head(60)
    manifest = pd.DataFrame(
        {
            "image_path": [str(root / "images" / f) for f in meta["filename"]],
            "patient_id": meta["patientid"],
            "view": meta["view"].str.split().str[0],
            "report": meta["clinical_notes"],
        }
    )
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    result = prepare(
        "manifest",
        str(tmp_path / "manifest.csv"),
        tmp_path / "cache",
        size=48,
        workers=0,
        allow_absolute_paths=True,
    )
    assert result.cached == 60 and result.skipped == 0
    s = summarise("manifest", str(tmp_path / "manifest.csv"), allow_absolute_paths=True)
    assert s["images"] == 60 and s["reports"] == 60
