"""``radtex-bench bench trainer`` and ``benchmarks/gpu_pretrain.py --smoke``, on tiny sizes."""

from __future__ import annotations

import importlib.util
import json
import statistics
from pathlib import Path

import pytest

from radtex_bench.cli import main

GPU_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_pretrain.py"


def test_bench_trainer_prints_one_json_object(capsys):
    argv = [
        "--quiet",
        "bench",
        "trainer",
        "--json",
        "--size",
        "32",
        "--batch-size",
        "4",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--repeats",
        "2",
    ]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["benchmark"] == "trainer" and result["threads"] == 1 and result["device"] == "cpu"
    assert len(result["toolkit_runs"]) == len(result["bare_runs"]) == 2
    assert all(x > 0 for x in result["toolkit_runs"] + result["bare_runs"])
    assert result["toolkit_steps_per_s"] == pytest.approx(statistics.median(result["toolkit_runs"]), rel=1e-2)
    pairs = [t / b for t, b in zip(result["toolkit_runs"], result["bare_runs"])]
    assert result["ratio"] == pytest.approx(statistics.median(pairs), rel=1e-2)


def test_bench_trainer_unknown_encoder_is_a_user_error(capsys):
    assert main(["bench", "trainer", "--encoder", "resnet9000", "--repeats", "1"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


@pytest.mark.slow
def test_gpu_script_smoke_runs_on_the_cpu(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_pretrain", GPU_SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "results.json"
    assert (
        script.main(
            [
                "--smoke",
                "--out",
                str(out),
                "--device",
                "cpu",
                "--views",
                "device",
                "--threads",
                "1",
                "--steps",
                "1",
                "--work",
                str(tmp_path / "work"),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["benchmark"] == "gpu_pretrain" and report["encoder"] == "resnet18"
    assert [r["objective"] for r in report["results"]] == ["captioning", "clip", "simclr"]
    for row in report["results"]:
        assert row["images_per_s"] > 0 and row["step_s"] > 0
    simclr = report["results"][2]
    assert simclr["views_per_image"] == 2 and simclr["views_made_on"] == "device"
    assert (tmp_path / "work" / "cache" / "pixels.npy").is_file()  # trained from the prepared uint8 cache
