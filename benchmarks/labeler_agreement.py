"""Agreement of the rule report labeler with reference labels: the synthetic set and real OpenI reports.

1. Synthetic: ``generate_synthetic`` writes reports and the labels a CheXpert-style labeler should read
   from them (9 pathologies + No Finding + Support Devices). Per label: precision / recall / F1 of
   positives (1 vs not 1), and agreement on the reference's negatives (0) and uncertain (-1) mentions.
2. OpenI / IU X-ray (``../shared/data/openi_reports``, skipped when absent): reference = the ``openi``
   dataset kind's MeSH mapping (manual MeSH major terms -> positives; ``normal`` -> No Finding);
   per label, precision / recall / F1 of positives, one row per report.

    python benchmarks/labeler_agreement.py                       # both tables, markdown
    python benchmarks/labeler_agreement.py --n 2000 --json       # one JSON object
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from radtex_bench.data.labels import CHEXPERT_14, RADTEX_9, parse_label_column
from radtex_bench.data.synthetic import generate_synthetic
from radtex_bench.text.labeler import label_reports

OPENI_DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "openi_reports"


def _prf(ref_pos: np.ndarray, lab_pos: np.ndarray) -> dict:
    tp = int(np.sum(ref_pos & lab_pos))
    fp = int(np.sum(~ref_pos & lab_pos))
    fn = int(np.sum(ref_pos & ~lab_pos))
    p = tp / (tp + fp) if tp + fp else float("nan")
    r = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return {"tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f1": f1, "n_ref": tp + fn}


def _agree(ref: np.ndarray, lab: np.ndarray, value: float) -> dict:
    """Of the reference's ``value`` labels, the share the labeler gave the same value; and vice versa."""
    r, v = ref == value, lab == value
    return {
        "n_ref": int(r.sum()),
        "recall": float(np.sum(r & v) / r.sum()) if r.sum() else float("nan"),
        "precision": float(np.sum(r & v) / v.sum()) if v.sum() else float("nan"),
    }


def synthetic_agreement(n: int, size: int, seed: int, folder: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = generate_synthetic(Path(folder or tmp) / "synth", n=n, size=size, seed=seed)
        frame = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
    start = time.perf_counter()
    labels = label_reports(frame["report"].tolist())
    seconds = time.perf_counter() - start
    names = list(RADTEX_9) + ["No Finding", "Support Devices"]
    rows = {}
    for name in names:
        ref = parse_label_column(frame[name], name, "manifest.csv")
        lab = labels[:, CHEXPERT_14.index(name)]
        rows[name] = {
            "positive": _prf(ref == 1, lab == 1),
            "negative": _agree(ref, lab, 0.0),
            "uncertain": _agree(ref, lab, -1.0),
            "exact": float(np.mean((ref == lab) | (np.isnan(ref) & np.isnan(lab)))),
        }
    ref9 = np.stack([parse_label_column(frame[c], c, "m") == 1 for c in RADTEX_9], axis=1)
    lab9 = labels[:, [CHEXPERT_14.index(c) for c in RADTEX_9]] == 1
    return {
        "reports": len(frame),
        "seconds": seconds,
        "labels": rows,
        "micro_f1_9": _prf(ref9.ravel(), lab9.ravel())["f1"],
    }


def _openi_module():
    try:  # the dataset kinds moved into a package; support both layouts
        from radtex_bench.data.kinds import openi
    except ImportError:
        from radtex_bench.data import openi
    return openi


def openi_agreement(root: Path) -> dict:
    openi = _openi_module()
    texts, refs = [], []
    for _, xml in openi._xml_documents(root):
        _, text, terms, _ = openi.parse_report(xml)
        found = openi.mesh_labels(terms)
        if found is None or not text:
            continue  # "No Indexing" / no report text: nothing to compare
        texts.append(text)
        refs.append([found.get(name, np.nan) for name in CHEXPERT_14])
    ref = np.array(refs, dtype=np.float32)
    start = time.perf_counter()
    labels = label_reports(texts)
    seconds = time.perf_counter() - start
    rows = {}
    for j, name in enumerate(CHEXPERT_14):
        ref_pos = ref[:, j] == 1
        if not ref_pos.any():
            continue  # MeSH mapping never gives this label
        rows[name] = {
            "positive": _prf(ref_pos, labels[:, j] == 1),
            "positive_or_uncertain": _prf(ref_pos, np.isin(labels[:, j], (1.0, -1.0))),
        }
    path = [c for c in rows if c not in ("No Finding", "Support Devices")]
    cols = [CHEXPERT_14.index(c) for c in path]
    micro = _prf((ref[:, cols] == 1).ravel(), (labels[:, cols] == 1).ravel())["f1"]
    return {"reports": len(texts), "seconds": seconds, "labels": rows, "micro_f1_pathologies": micro}


def _f(x: float) -> str:
    return "–" if x != x else f"{x:.3f}"


def markdown(result: dict) -> str:
    syn = result["synthetic"]
    lines = [
        f"Synthetic ({syn['reports']} reports, labelled in {syn['seconds']:.2f} s); "
        f"micro F1 of positives over the 9 pathologies: **{syn['micro_f1_9']:.3f}**",
        "",
        "| label | ref. positives | precision | recall | F1 | negatives: recall / precision (n) "
        "| uncertain: recall / precision (n) | exact 4-state agreement |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in syn["labels"].items():
        p, ng, u = row["positive"], row["negative"], row["uncertain"]
        lines.append(
            f"| {name} | {p['n_ref']} | {_f(p['precision'])} | {_f(p['recall'])} | {_f(p['f1'])} | "
            f"{_f(ng['recall'])} / {_f(ng['precision'])} ({ng['n_ref']}) | "
            f"{_f(u['recall'])} / {_f(u['precision'])} ({u['n_ref']}) | {_f(row['exact'])} |"
        )
    openi = result.get("openi")
    if openi is None:
        lines += ["", f"OpenI: skipped ({result.get('openi_skipped', 'not found')})"]
        return "\n".join(lines)
    lines += [
        "",
        f"OpenI ({openi['reports']} reports with MeSH labels, labelled in {openi['seconds']:.2f} s); "
        f"micro F1 of positives over the pathologies below: **{openi['micro_f1_pathologies']:.3f}**",
        "",
        "| label | MeSH positives | precision | recall | F1 | F1 counting uncertain as positive |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in openi["labels"].items():
        p, pu = row["positive"], row["positive_or_uncertain"]
        cells = [str(p["n_ref"]), _f(p["precision"]), _f(p["recall"]), _f(p["f1"]), _f(pu["f1"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="synthetic reports")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--openi", type=Path, default=OPENI_DEFAULT, help="folder with NLMCXR_reports.tgz")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of markdown")
    args = parser.parse_args()
    result: dict = {"synthetic": synthetic_agreement(args.n, args.size, args.seed)}
    if (args.openi / "NLMCXR_reports.tgz").is_file() or (args.openi / "ecgen-radiology").is_dir():
        result["openi"] = openi_agreement(args.openi)
    else:
        result["openi_skipped"] = f"{args.openi} not found"
        print(f"OpenI skipped: {args.openi} not found", file=sys.stderr)
    print(json.dumps(result, indent=1) if args.json else markdown(result))


if __name__ == "__main__":
    main()
