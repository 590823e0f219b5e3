"""The built-in synthetic dataset: layout, determinism, splits, labels vs reports vs images."""

from __future__ import annotations

import copy
import csv
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radtex_bench.data import synthetic as syn
from radtex_bench.data.labels import RADTEX_9
from radtex_bench.data.reports import sections
from radtex_bench.errors import UserError

# An independent, CheXpert-style reading of the reports (mention phrases from the CheXpert labeler).
MENTIONS = {
    "Atelectasis": r"atelecta|collapse",
    "Cardiomegaly": r"cardiomegaly|the heart|heart size|cardiac silhouette|cardiac enlargement|enlarged heart",
    "Consolidation": r"consolidat",
    "Edema": r"edema|vascular congestion",
    "Enlarged Cardiomediastinum": r"mediastinum|mediastinal silhouette|contour",
    "Lung Opacity": r"opaci|infiltrat|airspace disease",
    "Pleural Effusion": r"effusion|pleural fluid",
    "Pneumonia": r"pneumonia|infecti",
    "Pneumothorax": r"pneumothora",
}
HEDGES = (
    r"possibl|may represent|may be|cannot be excluded|cannot exclude|questionable|concerning for|borderline"
)
NEGATIONS = r"^(no|there is no|there are no)\b|\bnormal\b|\bunremarkable\b|within normal limits"


def _read(folder: Path) -> list[dict[str, str]]:
    with open(folder / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _sentences(report: str) -> list[str]:
    body = re.sub(r"\b\d+\. ", "", report.replace("FINDINGS:", "").replace("IMPRESSION:", ""))
    return [s.strip().lower() for s in re.split(r"(?<=\.)\s+", body) if s.strip()]


@pytest.fixture(scope="module")
def ds400(tmp_path_factory) -> Path:
    return syn.generate_synthetic(tmp_path_factory.mktemp("syn") / "ds", n=400, size=32, seed=0)


@pytest.fixture(scope="module")
def rows400(ds400) -> list[dict[str, str]]:
    return _read(ds400)


def test_manifest_columns_files_and_ids(ds400, rows400):
    with open(ds400 / "manifest.csv", newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert tuple(header[:7]) == (
        "image_id",
        "image_path",
        "patient_id",
        "study_id",
        "view",
        "split",
        "report",
    )
    assert tuple(header[7:16]) == RADTEX_9
    assert set(header[16:]) <= {"No Finding", "Support Devices"}
    assert len(rows400) == 400
    assert len({r["image_id"] for r in rows400}) == 400
    for r in rows400:
        assert re.fullmatch(r"P\d{5}_S\d{2}", r["image_id"])
        assert r["image_id"].startswith(r["patient_id"] + "_")
        assert r["image_path"] == f"images/{r['image_id']}.png"
        assert (ds400 / r["image_path"]).is_file()
        assert r["view"] in ("PA", "AP")
    assert len(os.listdir(ds400 / "images")) == 400
    views = [r["view"] for r in rows400]
    assert 0.5 < views.count("PA") / 400 < 0.95  # mostly PA, some AP


def test_images_are_8bit_greyscale_of_the_requested_size(ds400, rows400, tmp_path):
    for r in rows400[:20]:
        with Image.open(ds400 / r["image_path"]) as im:
            assert im.mode == "L" and im.size == (32, 32)
            px = np.asarray(im)
        assert px.dtype == np.uint8 and px.std() > 10  # an image, not a blank
    out = syn.generate_synthetic(tmp_path / "big", n=12, size=64, seed=3)
    with Image.open(next((out / "images").iterdir())) as im:
        assert im.mode == "L" and im.size == (64, 64)


def test_same_seed_gives_identical_bytes_other_seed_differs(tmp_path):
    a = syn.generate_synthetic(tmp_path / "a", n=60, size=32, seed=5)
    b = syn.generate_synthetic(tmp_path / "b", n=60, size=32, seed=5)
    c = syn.generate_synthetic(tmp_path / "c", n=60, size=32, seed=6)
    assert (a / "manifest.csv").read_bytes() == (b / "manifest.csv").read_bytes()
    names = sorted(os.listdir(a / "images"))
    assert names == sorted(os.listdir(b / "images"))
    assert all((a / "images" / n).read_bytes() == (b / "images" / n).read_bytes() for n in names)
    assert (a / "manifest.csv").read_bytes() != (c / "manifest.csv").read_bytes()
    shared = set(names) & set(os.listdir(c / "images"))
    assert shared and all((a / "images" / n).read_bytes() != (c / "images" / n).read_bytes() for n in shared)


def test_image_k_does_not_depend_on_n(tmp_path):
    small = syn.generate_synthetic(tmp_path / "s", n=45, size=32, seed=2)
    large = syn.generate_synthetic(tmp_path / "l", n=170, size=32, seed=2)  # spans two render chunks
    rows_s, rows_l = _read(small), _read(large)
    assert rows_s == rows_l[:45]
    for r in rows_s:
        assert (small / r["image_path"]).read_bytes() == (large / r["image_path"]).read_bytes()


def test_splits_are_by_patient_and_roughly_70_10_20(rows400):
    split_of: dict[str, set[str]] = {}
    for r in rows400:
        split_of.setdefault(r["patient_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of.values())
    patients = list(split_of.values())
    share = {k: sum(k in s for s in patients) / len(patients) for k in ("train", "validate", "test")}
    assert 0.6 < share["train"] < 0.8 and 0.04 < share["validate"] < 0.17 and 0.12 < share["test"] < 0.3
    per_patient = [sum(r["patient_id"] == p for r in rows400) for p in split_of]
    assert max(per_patient) <= 3 and 1.2 < np.mean(per_patient) < 2.2  # 1-3 studies per patient


def test_label_values_and_every_pathology_present(rows400):
    for r in rows400:
        for name in syn.LABEL_COLUMNS:
            assert r[name] in ("1", "0", "-1", "")
    for name in RADTEX_9:
        values = [r[name] for r in rows400]
        share = values.count("1") / len(values)
        assert 0.03 < share < 0.5, (name, share)
        assert values.count("") > 0 or name in ("Cardiomegaly",)  # some findings stay unmentioned
    nofinding = [r["No Finding"] for r in rows400].count("1") / 400
    assert 0.15 < nofinding < 0.6
    for r in rows400:  # No Finding is never set alongside a positive or uncertain pathology
        if r["No Finding"] == "1":
            assert not any(r[n] in ("1", "-1") for n in RADTEX_9)


def test_reports_have_both_sections(rows400):
    for r in rows400:
        parts = sections(r["report"])
        assert r["report"].startswith("FINDINGS: ")
        assert parts.get("FINDINGS") and parts.get("IMPRESSION")


def test_labels_agree_with_report_text(rows400):
    """Positive: mentioned without negation; uncertain: every mention hedged; negative: negated;
    missing: not mentioned at all."""
    for r in rows400:
        sents = _sentences(r["report"])
        for name in RADTEX_9:
            mentioning = [s for s in sents if re.search(MENTIONS[name], s)]
            value = r[name]
            ctx = (name, value, r["report"])
            if value == "":
                assert not mentioning, ctx
            elif value == "1":
                assert any(not re.search(NEGATIONS, s) for s in mentioning), ctx
            elif value == "-1":
                assert mentioning and all(re.search(HEDGES, s) for s in mentioning), ctx
            else:
                assert mentioning and all(re.search(NEGATIONS, s) for s in mentioning), ctx


def test_hedged_labels_come_with_hedging_words(rows400):
    hedged = [(r, n) for r in rows400 for n in RADTEX_9 if r[n] == "-1"]
    assert len(hedged) >= 10
    for r, name in hedged:
        assert re.search(HEDGES, r["report"].lower()), (name, r["report"])


def test_reports_vary_and_describe_location_severity_and_devices(rows400):
    reports = [r["report"] for r in rows400]
    text = " ".join(reports).lower()
    for word in (
        "left",
        "right",
        "bilateral",
        "small",
        "moderate",
        "large",
        "mild",
        "lower lobe",
        "apical",
        "endotracheal tube",
        "pacemaker",
        "catheter",
        "cardiomegaly",
        "enlarged cardiac silhouette",
    ):
        assert word in text, word
    assert len(set(reports)) > 250  # templates and synonyms, not one sentence per label pattern
    effusion_rows = [r for r in rows400 if r["Pleural Effusion"] == "1"]
    assert all(re.search(r"\b(left|right|bilateral)\b", r["report"]) for r in effusion_rows)


def test_mean_intensity_does_not_give_labels_away(ds400, rows400):
    from sklearn.metrics import roc_auc_score

    means = np.array([np.asarray(Image.open(ds400 / r["image_path"]), np.float32).mean() for r in rows400])
    for name in RADTEX_9:
        y = np.array([r[name] == "1" for r in rows400])
        assert 0.3 < roc_auc_score(y, means) < 0.7, name


def _attenuation(study, findings=None, size=64, **anat):
    """The painted attenuation map (before the per-image window, which shifts every pixel)."""
    s = copy.deepcopy(study)
    if findings is not None:
        s.findings = findings
    s.anat = dict(s.anat, **anat)
    syn._apply_to_anatomy(s)
    return syn._paint([s], size, 0).A[0]


def _normal_study():
    for patient in range(1, 200):
        for s in syn._sample_patient(0, patient):
            if not s.findings and not s.devices and s.view == "PA" and not s.chronic["sternotomy"]:
                return s
    raise AssertionError("no normal study found")


def test_laterality_follows_radiology_convention():
    """A right pleural effusion whitens the image's left lower zone; a left one the right."""
    base = _normal_study()
    plain = _attenuation(base, [])
    right = _attenuation(base, [syn.Finding("Pleural Effusion", (syn.RIGHT,), "base", 0.8)]) - plain
    left = _attenuation(base, [syn.Finding("Pleural Effusion", (syn.LEFT,), "base", 0.8)]) - plain
    lower = slice(32, 64)
    assert right[lower, :32].sum() > 1.0 and left[lower, 32:].sum() > 1.0
    assert right[lower, :32].sum() > 50 * np.abs(right[:, 32:]).sum()  # only a sliver crosses the midline
    assert left[lower, 32:].sum() > 50 * np.abs(left[:, :32]).sum()
    assert np.abs(right[:20]).sum() < 1e-3  # at the base, not the apex


def test_findings_change_the_image_locally():
    base = _normal_study()
    plain = _attenuation(base, [])
    ptx = _attenuation(base, [syn.Finding("Pneumothorax", (syn.LEFT,), "apex", 0.7)]) - plain
    assert ptx[:, 32:].min() < -0.1 and np.abs(ptx[:, 32:]).sum() > 50 * np.abs(ptx[:, :32]).sum()
    cons = _attenuation(base, [syn.Finding("Consolidation", (syn.RIGHT,), "RUL", 0.7)]) - plain
    assert cons[:32, :32].sum() > 50 * (np.abs(cons[32:]).sum() + np.abs(cons[:, 32:]).sum())
    edema = _attenuation(base, [syn.Finding("Edema", (syn.RIGHT, syn.LEFT), "perihilar", 0.7)]) - plain
    assert edema[:, :32].sum() > 1.0 and edema[:, 32:].sum() > 1.0  # both lungs


def test_cardiomegaly_widens_the_heart_mostly_to_the_image_right():
    base = _normal_study()
    diff = _attenuation(base, ctr=0.62) - _attenuation(base, ctr=0.42)
    mid = 32 + int(round(base.anat["tx"] * 32))
    assert diff[:, mid:].sum() > 1.5 * diff[:, :mid].sum() > 0


def test_second_call_returns_without_rewriting(tmp_path):
    out = syn.generate_synthetic(tmp_path / "d", n=30, size=32, seed=0)
    files = [out / "manifest.csv", out / "synthetic.json", *sorted((out / "images").iterdir())[:3]]
    before = [f.stat().st_mtime_ns for f in files]
    assert syn.generate_synthetic(tmp_path / "d", n=30, size=32, seed=0) == out
    assert [f.stat().st_mtime_ns for f in files] == before
    # Other parameters replace the old dataset completely.
    syn.generate_synthetic(tmp_path / "d", n=20, size=32, seed=0)
    assert len(_read(out)) == 20 and len(os.listdir(out / "images")) == 20
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_interrupted_run_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []

    def boom(done, total):
        calls.append(done)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        syn.generate_synthetic(tmp_path / "d", n=300, size=32, seed=0, progress=boom)
    assert calls and not (tmp_path / "d").exists()
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_a_folder_it_did_not_write(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a synthetic dataset"):
        syn.generate_synthetic(mine, n=10, size=32)
    assert (mine / "notes.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (syn.generate_synthetic(empty, n=10, size=32) / "manifest.csv").is_file()


def test_progress_and_params(tmp_path):
    seen = []
    syn.generate_synthetic(tmp_path / "d", n=150, size=64, seed=1, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (150, 150) and all(t == 150 for _, t in seen) and len(seen) >= 2  # 128 per chunk
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    params = syn.generator_params(150, 64, 1)
    assert params["version"] == syn.GENERATOR_VERSION and (params["n"], params["size"], params["seed"]) == (
        150,
        64,
        1,
    )
    import json

    assert json.loads((tmp_path / "d" / "synthetic.json").read_text())["n"] == 150
    with pytest.raises(UserError):
        syn.generate_synthetic(tmp_path / "bad", n=0)
