"""The CheXpert-style report labeler: rules on hand-written sentences, the CLI, and agreement checks."""

from __future__ import annotations

import csv
import math

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA

from radtex_bench.cli import main
from radtex_bench.data.labels import CHEXPERT_14, RADTEX_9, parse_label_column
from radtex_bench.errors import UserError
from radtex_bench.text.labeler import (
    LABELERS,
    Labeler,
    RuleLabeler,
    get_labeler,
    label_report,
    label_reports,
    register_labeler,
)

NAN = float("nan")


def mentioned(text: str) -> dict[str, float]:
    """The labels of ``text`` that are not blank."""
    return {k: v for k, v in label_report(text).items() if not math.isnan(v)}


@pytest.mark.parametrize(
    "text, expected",
    [
        # plain positives (synonyms)
        ("There is a small left pleural effusion.", {"Pleural Effusion": 1}),
        ("Enlarged heart.", {"Cardiomegaly": 1}),
        ("Heart size is moderately enlarged.", {"Cardiomegaly": 1}),
        ("Moderate pulmonary edema.", {"Edema": 1}),
        ("Left lower lobe collapse.", {"Atelectasis": 1}),
        ("Right upper lobe airspace disease.", {"Lung Opacity": 1}),
        ("The mediastinum is widened.", {"Enlarged Cardiomediastinum": 1}),
        ("Old left rib fracture.", {"Fracture": 1}),
        ("A 12 mm nodular opacity in the lingula.", {"Lung Lesion": 1, "Lung Opacity": 1}),
        # negation
        ("No pleural effusion.", {"Pleural Effusion": 0, "No Finding": 1}),
        ("without evidence of pneumothorax", {"Pneumothorax": 0, "No Finding": 1}),
        ("The lungs are clear without focal consolidation.", {"Consolidation": 0, "No Finding": 1}),
        (
            "No focal consolidation, pulmonary edema, or focal airspace opacity.",
            {"Consolidation": 0, "Edema": 0, "Lung Opacity": 0, "No Finding": 1},
        ),
        ("Pneumothorax is not seen.", {"Pneumothorax": 0, "No Finding": 1}),
        ("The left pleural effusion has resolved.", {"Pleural Effusion": 0, "No Finding": 1}),
        ("No suspicious pulmonary mass or nodule.", {"Lung Lesion": 0, "No Finding": 1}),
        # uncertainty
        ("Possible left lower lobe atelectasis.", {"Atelectasis": -1}),
        ("cannot exclude pneumonia", {"Pneumonia": -1}),
        ("A tiny right apical pneumothorax cannot be excluded.", {"Pneumothorax": -1}),
        ("Findings are concerning for pneumonia.", {"Pneumonia": -1}),
        ("Borderline heart size.", {"Cardiomegaly": -1}),
        ("Mild pulmonary vascular congestion.", {"Edema": -1}),  # CheXpert: congestion alone is uncertain
        ("Atelectasis versus pneumonia.", {"Atelectasis": -1, "Pneumonia": -1}),
        # scope: terminators, other cues, windows
        ("No effusion, but there is cardiomegaly.", {"Cardiomegaly": 1, "Pleural Effusion": 0}),
        ("No pneumothorax, possible small effusion.", {"Pneumothorax": 0, "Pleural Effusion": -1}),
        (
            "Patchy opacity at the left base, which may represent atelectasis.",
            {"Lung Opacity": 1, "Atelectasis": -1},
        ),
        (
            "Faint opacity in the lingula, possibly early consolidation.",
            {"Lung Opacity": 1, "Consolidation": -1},
        ),
        ("No change in the small left pleural effusion.", {"Pleural Effusion": 1}),  # pseudo-negation
        # the heart and mediastinum: normal size is a negative mention
        ("Heart size is normal.", {"Cardiomegaly": 0, "No Finding": 1}),
        ("The cardiac silhouette is within normal limits.", {"Cardiomegaly": 0, "No Finding": 1}),
        (
            "Heart size and mediastinal contours are normal.",
            {"Cardiomegaly": 0, "Enlarged Cardiomediastinum": 0, "No Finding": 1},
        ),
        ("The heart is not enlarged.", {"Cardiomegaly": 0, "No Finding": 1}),
        ("The cardiac silhouette is possibly mildly enlarged.", {"Cardiomegaly": -1}),
        ("Stable cardiomediastinal silhouette.", {"Enlarged Cardiomediastinum": -1}),  # CheXpert rule
        # support devices, and No Finding beside them
        ("Right PICC line with tip in the SVC.", {"Support Devices": 1, "No Finding": 1}),
        ("Endotracheal tube 4 cm above the carina. Mild edema.", {"Support Devices": 1, "Edema": 1}),
        ("The chest tube has been removed.", {"Support Devices": 0, "No Finding": 1}),
        ("Median sternotomy wires are intact.", {"No Finding": 1}),  # not a device, as in CheXpert
        # No Finding and what it ignores
        ("No acute cardiopulmonary process.", {"No Finding": 1}),
        ("The lungs are clear.", {"No Finding": 1}),  # "lungs" is no mention (as in CheXpert)
        ("Mild levoscoliosis of the thoracic spine.", {}),  # an "other" finding: No Finding blank
        ("", {}),
    ],
)
def test_sentences(text, expected):
    assert mentioned(text) == {k: float(v) for k, v in expected.items()}


def test_aggregation_positive_beats_uncertain_beats_negative():
    # CheXpert's aggregate stage, over mentions anywhere in the report
    assert mentioned("Possible left effusion. Large right pleural effusion.")["Pleural Effusion"] == 1
    assert mentioned("No right effusion. Possible left effusion.")["Pleural Effusion"] == -1
    assert mentioned("No right effusion. There is a small left effusion.")["Pleural Effusion"] == 1
    report = "FINDINGS: No pneumothorax. IMPRESSION: No pneumothorax or effusion."
    assert mentioned(report) == {"Pneumothorax": 0.0, "Pleural Effusion": 0.0, "No Finding": 1.0}


def test_no_finding_rule():
    assert mentioned("No acute cardiopulmonary process.") == {"No Finding": 1.0}
    # any pathology positive or uncertain blanks No Finding; negatives and devices do not
    assert "No Finding" not in mentioned("Mild cardiomegaly.")
    assert "No Finding" not in mentioned("Possible atelectasis.")
    assert "No Finding" not in mentioned("Healed left rib fracture.")
    assert mentioned("Pacemaker in place. No effusion.")["No Finding"] == 1
    # CHF is an edema mention and an uncertain cardiomegaly (CheXpert's exception), unless negated
    assert mentioned("Findings consistent with CHF.") == {"Edema": 1.0, "Cardiomegaly": -1.0}
    assert mentioned("No CHF.") == {"Edema": 0.0, "No Finding": 1.0}


def test_sections_and_raw_reports():
    extracted = "FINDINGS: The lungs are clear. No effusion. IMPRESSION: Mild cardiomegaly."
    assert mentioned(extracted) == {"Pleural Effusion": 0.0, "Cardiomegaly": 1.0}
    # a raw report: the INDICATION section (the question, not the finding) is not read
    raw = "INDICATION: Rule out pneumonia.\nFINDINGS: Lungs are clear.\nIMPRESSION: No acute process."
    assert mentioned(raw) == {"No Finding": 1.0}
    # OpenI's de-identification placeholders are removed before labelling
    assert mentioned("IMPRESSION: No XXXX of pneumothorax.") == {"Pneumothorax": 0.0, "No Finding": 1.0}


def test_label_reports_shape_order_and_missing_text():
    texts = ["Mild cardiomegaly.", None, float("nan"), "No effusion.", "   "]
    out = label_reports(texts)
    assert out.shape == (5, 14) and out.dtype == np.float32
    card, eff = CHEXPERT_14.index("Cardiomegaly"), CHEXPERT_14.index("Pleural Effusion")
    assert out[0, card] == 1 and out[3, eff] == 0
    assert np.isnan(out[[1, 2, 4]]).all()  # no text: every label blank, No Finding too
    assert label_reports([]).shape == (0, 14)


def test_batch_equals_single_reports_and_is_deterministic(monkeypatch):
    from radtex_bench.text.labeler import rules

    texts = [
        "No effusion",  # no final period: the next report must not continue this sentence
        "pneumothorax. Possible consolidation",
        "Heart size is normal. Right chest tube.",
        "Atelectasis or pneumonia.",
    ] * 3
    batch = label_reports(texts)
    single = np.stack([label_reports([t])[0] for t in texts])
    np.testing.assert_array_equal(batch, single)
    monkeypatch.setattr(rules, "BATCH", 5)  # several passes give the same answer
    np.testing.assert_array_equal(label_reports(texts), batch)


def test_registry(monkeypatch):
    assert isinstance(get_labeler(), RuleLabeler) and get_labeler("rule") is get_labeler()
    with pytest.raises(UserError, match="unknown labeler 'rules'.*did you mean 'rule'"):
        get_labeler("rules")

    @register_labeler("test_constant")
    class Constant(Labeler):
        def label_reports(self, texts):
            return np.ones((len(texts), 14), dtype=np.float32)

    try:
        assert label_report("anything", labeler="test_constant")["Fracture"] == 1.0
    finally:
        LABELERS._items.pop("test_constant")
        LABELERS._origin.pop("test_constant")


def test_f1chexbert_never_downloads_and_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("RADTEX_BENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UserError) as err:
        get_labeler("f1chexbert")
    message = str(err.value)
    folder = tmp_path / "cache" / "chexbert"
    assert "\n" not in message and "chexbert.pth" in message and str(folder) in message
    assert "rule" in message
    assert not (tmp_path / "cache").exists()  # nothing created, nothing fetched
    # weights there, tokenizer folder missing: the next file is named
    folder.mkdir(parents=True)
    (folder / "chexbert.pth").write_bytes(b"")
    with pytest.raises(UserError, match="bert-base-uncased"):
        get_labeler("f1chexbert")


def test_f1chexbert_error_from_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RADTEX_BENCH_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "r.csv"
    path.write_text("report\nNo effusion.\n")
    assert main(["label", str(path), "--labeler", "f1chexbert"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: labeler f1chexbert:") and err.count("\n") == 1 and "Traceback" not in err


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def test_cli_label_keeps_rows_and_columns(tmp_path, capsys):
    path = _write_csv(
        tmp_path / "in.csv",
        ["study", "text", "note"],
        [
            ["s3", "No pleural effusion. Mild cardiomegaly.", "a, b"],
            ["s1", "", ""],
            ["s2", "Possible pneumonia.", "0"],
        ],
    )
    out = tmp_path / "deep" / "labels.csv"
    assert main(["label", str(path), "--column", "text", "--out", str(out)]) == 0
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["study", "text", "note", *CHEXPERT_14]
    assert [r[0] for r in rows[1:]] == ["s3", "s1", "s2"]  # input order
    assert rows[1][:3] == ["s3", "No pleural effusion. Mild cardiomegaly.", "a, b"]  # input kept as is
    labels = [dict(zip(CHEXPERT_14, r[3:])) for r in rows[1:]]
    assert labels[0]["Cardiomegaly"] == "1" and labels[0]["Pleural Effusion"] == "0"
    assert labels[0]["No Finding"] == "" and labels[0]["Edema"] == ""
    assert set(labels[1].values()) == {""}
    assert labels[2]["Pneumonia"] == "-1"
    assert not list(out.parent.glob(".*.tmp"))  # atomic write left nothing behind

    # without --out: the same table on stdout
    capsys.readouterr()
    assert main(["label", str(path), "--column", "text"]) == 0
    assert list(csv.reader(capsys.readouterr().out.splitlines())) == rows


def test_cli_label_keeps_cells_exactly(tmp_path):
    # repeated column names, leading zeros, "NA", a short row: all written back as read
    path = tmp_path / "in.csv"
    path.write_text("id,id,report\n007,NA,Mild edema.\n\n008\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    assert main(["label", str(path), "--out", str(out)]) == 0
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["id", "id", "report"] and len(rows) == 3
    assert rows[1][:3] == ["007", "NA", "Mild edema."] and rows[1][3 + CHEXPERT_14.index("Edema")] == "1"
    assert rows[2] == ["008", "", ""] + [""] * 14


def test_cli_label_user_errors(tmp_path, capsys):
    path = _write_csv(tmp_path / "in.csv", ["id", "text"], [["1", "No effusion."]])
    assert main(["label", str(path)]) == 2  # --column defaults to "report"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    assert "'report'" in err and "'id', 'text'" in err

    assert main(["label", str(tmp_path / "missing.csv"), "--column", "text"]) == 2
    assert "missing.csv" in capsys.readouterr().err

    (tmp_path / "bad.csv").write_bytes(b"\xff\xfe\x00 binary \x00\xff")
    assert main(["label", str(tmp_path / "bad.csv"), "--column", "text"]) == 2
    assert capsys.readouterr().err.startswith("error: cannot read")

    taken = _write_csv(
        tmp_path / "taken.csv", ["report", "Cardiomegaly", "Cardiomegaly (input)"], [["x", "1", "0"]]
    )
    out = tmp_path / "out.csv"
    assert main(["label", str(taken), "--out", str(out)]) == 2
    assert "'Cardiomegaly (input)'" in capsys.readouterr().err and not out.exists()

    # a quote left open would swallow every later row into one report: refused, not merged
    (tmp_path / "open.csv").write_text('id,report\n1,"no effusion\n2,clear lungs\n')
    assert main(["label", str(tmp_path / "open.csv"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'a quote (") is probably left open' in err and not out.exists()
    # writing over the input would lose it
    before = path.read_text()
    assert main(["label", str(path), "--column", "text", "--out", str(path)]) == 2
    assert "is the input file" in capsys.readouterr().err and path.read_text() == before
    # a folder as --out
    assert main(["label", str(path), "--column", "text", "--out", str(tmp_path)]) == 2
    assert "it is a folder; give a file path" in capsys.readouterr().err


def test_cli_label_keeps_an_input_column_with_a_labels_name_beside_the_labelers(tmp_path):
    clash = _write_csv(tmp_path / "clash.csv", ["report", "Cardiomegaly"], [["No cardiomegaly.", "1"]])
    out = tmp_path / "out.csv"
    assert main(["label", str(clash), "--out", str(out)]) == 0
    with open(out, newline="") as f:
        header, row = list(csv.reader(f))
    assert header[:2] == ["report", "Cardiomegaly (input)"] and header[2:] == list(CHEXPERT_14)
    assert row[1] == "1" and row[2 + CHEXPERT_14.index("Cardiomegaly")] == "0"


def test_cli_label_on_the_synthetic_manifest_agrees_with_its_positive_labels(tmp_path, capsys):
    """Issue 13's check, through the command: the manifest's own label columns are kept as "(input)"."""
    from radtex_bench.data.synthetic import generate_synthetic

    root = generate_synthetic(tmp_path / "synth", n=200, size=16, seed=1)
    out = tmp_path / "labels.csv"
    assert main(["label", str(root / "manifest.csv"), "--column", "report", "--out", str(out)]) == 0
    own = [c for c in CHEXPERT_14 if c in pd.read_csv(root / "manifest.csv", nrows=0).columns]
    assert len(own) == 11  # the 9 RadTex pathologies, No Finding and Support Devices
    warning = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert warning == [
        f"warning: {root / 'manifest.csv'}: its own column(s) {', '.join(own)} are kept, renamed "
        f"{', '.join(repr(c + ' (input)') for c in own)}, beside the labeler's columns of that name"
    ]
    frame = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert len(frame) == 200
    refs, labs = [], []
    for name in RADTEX_9:
        refs.append(frame[f"{name} (input)"].to_numpy() == "1")
        labs.append(frame[name].to_numpy() == "1")
    ref, lab = np.concatenate(refs), np.concatenate(labs)
    assert ref.sum() > 100 and _positive_f1(ref, lab) >= 0.9


def _positive_f1(ref: np.ndarray, lab: np.ndarray) -> float:
    tp, fp, fn = np.sum(ref & lab), np.sum(~ref & lab), np.sum(ref & ~lab)
    return 2 * tp / (2 * tp + fp + fn)


def test_agreement_with_the_synthetic_generator(tmp_path):
    from radtex_bench.data.synthetic import generate_synthetic

    root = generate_synthetic(tmp_path / "synth", n=300, size=16, seed=0)
    frame = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
    labels = label_reports(frame["report"].tolist())
    refs, labs = [], []
    for name in RADTEX_9:
        ref = parse_label_column(frame[name], name, "manifest.csv")
        lab = labels[:, CHEXPERT_14.index(name)]
        refs.append(ref == 1)
        labs.append(lab == 1)
        if (ref == 1).sum() >= 5:
            assert _positive_f1(ref == 1, lab == 1) >= 0.9, name
        # negatives and uncertain mentions agree too
        assert np.mean(lab[ref == 0] == 0) >= 0.9, name
        if (ref == -1).sum() >= 5:
            assert np.mean(lab[ref == -1] == -1) >= 0.8, name
    assert _positive_f1(np.concatenate(refs), np.concatenate(labs)) >= 0.9


def _openi_module():
    try:
        from radtex_bench.data.kinds import openi
    except ImportError:
        from radtex_bench.data import openi
    return openi


@pytest.mark.skipif(not (SHARED_DATA / "openi_reports").is_dir(), reason="needs ../shared/data/openi_reports")
def test_agreement_with_openi_mesh_terms():
    """Real reports: a regression guard well below the measured F1 (docs/labeler.md)."""
    openi = _openi_module()
    texts, refs = [], []
    for _, xml in openi._xml_documents(SHARED_DATA / "openi_reports"):
        _, text, terms, _ = openi.parse_report(xml)
        found = openi.mesh_labels(terms)
        if found is not None and text:
            texts.append(text)
            refs.append([found.get(name, NAN) for name in CHEXPERT_14])
    ref, lab = np.array(refs, dtype=np.float32), label_reports(texts)
    assert len(texts) > 3000
    for name, floor in (("Cardiomegaly", 0.85), ("Pleural Effusion", 0.85), ("No Finding", 0.8)):
        j = CHEXPERT_14.index(name)
        assert _positive_f1(ref[:, j] == 1, lab[:, j] == 1) >= floor, name


# CheXbert's head order (its constants.CONDITIONS) and class meaning (its label.py): spelled out here so
# that the test does not borrow them from the code under test.
CHEXBERT_CONDITIONS = [*CHEXPERT_14[1:], "No Finding"]
BLANK, POSITIVE, NEGATIVE, UNCERTAIN = 0, 1, 2, 3


def _chexbert_state(config, forced: dict[str, int], no_finding_classes: int = 2) -> dict:
    """A CheXbert ``model_state_dict`` as saved from ``nn.DataParallel``: ``module.bert.*`` and
    ``module.linear_heads.{0..13}.*``; the heads named in ``forced`` always pick that class."""
    import torch
    from torch import nn
    from transformers import BertModel

    torch.manual_seed(0)
    bert = BertModel(config)
    heads = nn.ModuleList(
        [nn.Linear(config.hidden_size, 4) for _ in range(13)]
        + [nn.Linear(config.hidden_size, no_finding_classes)]
    )
    with torch.no_grad():
        for name, cls in forced.items():
            head = heads[CHEXBERT_CONDITIONS.index(name)]
            head.weight.zero_()
            head.bias.fill_(-5.0)
            head.bias[cls] = 5.0
    state = {f"bert.{k}": v for k, v in bert.state_dict().items()}
    state |= {f"linear_heads.{k}": v for k, v in heads.state_dict().items()}
    return {f"module.{k}": v for k, v in state.items()}


def _write_chexbert(folder, forced: dict[str, int], **kwargs):
    """``folder/chexbert.pth`` and ``folder/bert-base-uncased/`` (only config.json and vocab.txt, the
    two files docs/labeler.md asks for), with a tiny random BERT in place of BERT-base."""
    import torch
    from transformers import BertConfig

    bert = folder / "bert-base-uncased"
    bert.mkdir(parents=True)
    # bert-base-uncased's vocab.txt format: one WordPiece token per line, the line number is its id
    # (written by hand: transformers 5's save_pretrained writes tokenizer.json instead)
    words = "no mild cardiomegaly pleural effusion possible pneumonia heart size is normal the . ,".split()
    (bert / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    config = BertConfig(
        vocab_size=5 + len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64,
    )  # fmt: skip
    config.save_pretrained(str(bert))
    state = _chexbert_state(config, forced, **kwargs)
    # the released file also holds the training loop's epoch and optimiser state
    optimizer = torch.optim.Adam([torch.zeros(2, requires_grad=True)]).state_dict()
    torch.save(
        {"epoch": 4, "model_state_dict": state, "optimizer_state_dict": optimizer}, folder / "chexbert.pth"
    )
    return folder / "chexbert.pth"


@pytest.fixture
def chexbert_cache(tmp_path, monkeypatch):
    """``$RADTEX_BENCH_CACHE`` in tmp_path, and no labeler left built by (or for) another test."""
    from radtex_bench.text import labeler as labeler_package

    monkeypatch.setenv("RADTEX_BENCH_CACHE", str(tmp_path / "cache"))
    labeler_package._instance.cache_clear()
    yield tmp_path / "cache" / "chexbert"
    labeler_package._instance.cache_clear()


def test_f1chexbert_labels_reports_from_a_local_checkpoint(chexbert_cache):
    forced = {
        "Cardiomegaly": POSITIVE,
        "Pleural Effusion": NEGATIVE,
        "Edema": UNCERTAIN,
        "Pneumonia": BLANK,
        "No Finding": POSITIVE,  # its head has two classes: blank, positive
    }
    _write_chexbert(chexbert_cache, forced)
    labeler = get_labeler("f1chexbert")
    texts = [
        "FINDINGS: Mild cardiomegaly. IMPRESSION: No pleural effusion.",
        "",  # no text: every label blank, whatever the model says
        "Heart size is normal.",
        "Possible pneumonia, no effusion, the heart is normal, mild cardiomegaly.",
    ]
    out = labeler.label_reports(texts)
    assert out.shape == (4, 14) and out.dtype == np.float32
    assert set(np.unique(out[~np.isnan(out)])) <= {-1.0, 0.0, 1.0}
    expected = {"Cardiomegaly": 1.0, "Pleural Effusion": 0.0, "Edema": -1.0, "No Finding": 1.0}
    for i in (0, 2, 3):
        row = dict(zip(CHEXPERT_14, out[i].tolist()))
        assert {k: row[k] for k in expected} == expected  # each head lands in its CHEXPERT_14 column
        assert math.isnan(row["Pneumonia"])  # class 0 is blank
    assert np.isnan(out[1]).all()
    # batching and padding change nothing, random heads included
    labeler.batch_size = 1
    np.testing.assert_array_equal(labeler.label_reports(texts), out)
    assert labeler.label_reports([]).shape == (0, 14)
    # label_report(..., labeler=) reaches the same built labeler
    assert label_report(texts[0], labeler="f1chexbert")["Edema"] == -1.0


def test_f1chexbert_accepts_a_checkpoint_with_position_ids(chexbert_cache):
    import torch

    path = _write_chexbert(chexbert_cache, {"Fracture": POSITIVE})
    checkpoint = torch.load(path, weights_only=True)
    # what CheXbert's model.state_dict() held when saved under transformers 3.x-4.30
    checkpoint["model_state_dict"]["module.bert.embeddings.position_ids"] = torch.arange(64)[None]
    torch.save(checkpoint, path)
    assert get_labeler("f1chexbert").label_report("Mild cardiomegaly.")["Fracture"] == 1.0


@pytest.mark.parametrize(
    "damage, expected",
    [
        ("keys", r"not a CheXbert checkpoint for .*config\.json \(missing \['bert\.embeddings"),
        ("no_finding_with_4_classes", r"other shape \['linear_heads\.13\.weight'"),
        ("bare_state_dict", "has no 'model_state_dict'"),
        ("not_a_checkpoint", r"cannot read .* as a CheXbert checkpoint \(UnpicklingError\)"),
    ],
)
def test_f1chexbert_rejects_a_wrong_checkpoint_naming_the_file(chexbert_cache, damage, expected):
    import torch

    path = _write_chexbert(chexbert_cache, {}, no_finding_classes=4 if damage.startswith("no_") else 2)
    state = torch.load(path, weights_only=True)["model_state_dict"]
    if damage == "keys":  # e.g. an image classifier's checkpoint under that name
        torch.save({"model_state_dict": {"module.fc.weight": torch.zeros(14, 16)}}, path)
    elif damage == "bare_state_dict":
        torch.save(state, path)
    elif damage == "not_a_checkpoint":
        path.write_bytes(b"<html>404: Not Found</html>")
    with pytest.raises(UserError, match=expected) as err:
        get_labeler("f1chexbert")
    message = str(err.value)
    assert message.startswith("labeler f1chexbert: ") and str(path) in message and "\n" not in message
