"""SIGTERM during pretraining: a clean stop (checkpoint kept, no result files), then an exact resume."""

import os
import signal
import subprocess
import sys
import time

import yaml
from conftest import TINY_CAPTIONING, write_tiny_recipe

RESULTS = ("results.csv", "summary.csv", "comparisons.csv", "report.md")


def recipe(tmp_path, root):
    train = {"max_steps": 16, "batch_size": 4, "checkpoint_every": 2, "log_every": 1}
    objectives = [{"name": "captioning", "params": TINY_CAPTIONING, "train": train}, {"name": "random"}]
    evaluation = {"budgets": [4, 8], "seeds": 2, "bootstrap": 50}
    return write_tiny_recipe(tmp_path / "r.yaml", root, objectives, evaluation, "interrupt")


def test_sigterm_then_resume_matches_an_uninterrupted_run(tmp_path):
    from conftest import write_manifest

    write_manifest(tmp_path / "ds", n=40)
    path = recipe(tmp_path, tmp_path / "ds")
    # Every run is its own process with the same settings (thread count included), as a user's would be.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "radtex_bench", "--quiet", "run", str(path), "--out"]
    reference = tmp_path / "reference"
    subprocess.run([*command, str(reference)], env=env, check=True, capture_output=True)

    out = tmp_path / "interrupted"
    ckpt = out / "pretrain" / "captioning" / "last.ckpt"
    proc = subprocess.Popen([*command, str(out)], stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert ckpt.exists(), "no checkpoint appeared"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    assert not (out / "pretrain" / "captioning" / "encoder.safetensors").exists()  # stopped mid-training
    for name in RESULTS:
        assert not (out / name).exists()
    assert not list(out.rglob("*.tmp"))
    metrics = (out / "pretrain" / "captioning" / "metrics.jsonl").read_text().splitlines()
    assert 0 < len(metrics) < 16

    resumed = subprocess.run([*command, str(out), "--resume"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in (out / "run.log").read_text()
    for name in ("results.csv", "summary.csv", "comparisons.csv"):
        assert (out / name).read_text() == (reference / name).read_text(), name
    steps = [
        yaml.safe_load(line)["step"]
        for line in (out / "pretrain/captioning/metrics.jsonl").read_text().splitlines()
    ]
    assert steps == list(range(1, 17))  # nothing logged twice, nothing lost
