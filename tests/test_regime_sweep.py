"""benchmarks/regime_sweep.py on the shipped regime recipe, shrunk with --set: one table of the paired
captioning - supervised difference per noise level, read from the runs' own files, with the label-free
objective trained once and scored again (same bytes) at the other level."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "data.pretrain.n=160",
    "data.pretrain.size=32",
    "encoder.image_size=32",
    "data.pathologies=[Pleural Effusion, Lung Opacity]",
    "objectives.0.params.width=32",
    "objectives.0.params.vocab_size=300",
    "objectives.0.train.epochs=1",
    "objectives.0.train.batch_size=16",
    "objectives.0.train.warmup_steps=0",
    "objectives.1.train.epochs=1",
    "objectives.1.train.batch_size=16",
    "objectives.1.train.warmup_steps=0",
    "evaluation.budgets=[8, 16]",
    "evaluation.seeds=1",
    "evaluation.bootstrap=20",
]


def test_the_sweep_tables_the_paired_difference_per_level(tmp_path):
    out = tmp_path / "sweep"
    sets = [arg for s in TINY for arg in ("--set", s)]
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "regime_sweep.py"),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    command += ["--levels", "0", "0.5", "--exclude", "clip", "--exclude", "report_labels", *sets]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(out / "regime.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["level"], r["budget"]) for r in rows] == [("0", "8"), ("0", "16"), ("0.5", "8"), ("0.5", "16")]
    for row in rows:
        diff = float(row["captioning"]) - float(row["supervised"])
        assert abs(float(row["diff"]) - diff) < 2e-4  # the run's paired difference, as its summary says
        assert float(row["ci_low"]) <= float(row["diff"]) <= float(row["ci_high"])
    # captioning reads no labels: trained at level 0, scored from that encoder at 0.5 (same numbers)
    assert [r["captioning"] for r in rows[:2]] == [r["captioning"] for r in rows[2:]]
    first, again = (
        load_file(str(out / f"label_flip-{x}/pretrain/captioning/encoder.safetensors")) for x in ("0", "0.5")
    )
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    assert "name: checkpoint" in (out / "recipes" / "label_flip-0.5.yaml").read_text()
    assert "Crossover:" in (out / "regime.md").read_text()
