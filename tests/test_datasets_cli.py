"""``radtex-bench data summary --json``, ``prepare`` and ``bench loader`` through the CLI entry point."""

from __future__ import annotations

import json

from test_datasets_mimic import make_mimic
from test_datasets_nih import make_nih

from radtex_bench.cli import main
from radtex_bench.data.cache import PixelCache

SPEC_KEYS = ["kind", "images", "studies", "patients", "reports", "views", "splits", "labels"]
COUNT_KEYS = ["positive", "negative", "uncertain", "missing"]


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_summary_json_has_exactly_the_spec_keys(tmp_path, capsys):
    root = make_mimic(tmp_path / "mimic")
    assert main(["data", "summary", "mimic_cxr", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == SPEC_KEYS
    assert out["kind"] == "mimic_cxr" and out["images"] == 8 and out["reports"] == 7
    assert list(out["splits"]) == ["train", "validate", "test"]
    assert out["views"] == {"PA": 3, "AP": 2, "LATERAL": 2}
    assert all(list(counts) == COUNT_KEYS for counts in out["labels"].values())
    assert all(isinstance(v, int) for counts in out["labels"].values() for v in counts.values())


def test_summary_without_official_split_has_no_splits_key(tmp_path, capsys):
    root = make_nih(tmp_path / "nih", n_patients=4)
    assert main(["data", "summary", "nih", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == [k for k in SPEC_KEYS if k != "splits"]
    assert main(["data", "summary", "nih", str(root)]) == 0  # the table form
    assert "No Finding" in capsys.readouterr().out


def test_summary_user_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["data", "summary", "mimic", str(tmp_path), "--json"]) == 2
    assert "mimic_cxr" in _one_error_line(capsys.readouterr().err)  # did-you-mean
    assert main(["data", "summary", "nih", str(tmp_path / "nowhere"), "--json"]) == 2
    assert "does not exist" in _one_error_line(capsys.readouterr().err)


def test_a_synthetic_folder_is_summarised_as_generated_and_never_regenerated(tmp_path, capsys):
    from radtex_bench.data.synthetic import generate_synthetic

    root = generate_synthetic(tmp_path / "syn", n=24, size=32, seed=3)
    manifest = (root / "manifest.csv").read_bytes()
    assert main(["data", "summary", "synthetic", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "synthetic" and out["images"] == 24 and out["reports"] == 24

    # A recipe that names this folder with other generator parameters is refused, the data kept.
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: r\ndata:\n  pretrain: {{kind: synthetic, root: {root}, n: 30, size: 32, seed: 3}}\n"
        "encoder: {name: resnet18, image_size: 32}\nobjectives: [{name: random}]\n"
        "evaluation: {budgets: [4], seeds: 1}\n"
    )
    assert main(["--quiet", "run", str(recipe), "--out", str(tmp_path / "run")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "data.pretrain.root" in line and "n: 24" in line and "n: 30" in line
    assert (root / "manifest.csv").read_bytes() == manifest


def test_prepare_writes_a_cache_and_reports_json(tmp_path, capsys):
    root = make_nih(tmp_path / "nih", n_patients=4)
    out = tmp_path / "cache"
    assert main(["--quiet", "prepare", "nih", str(root), str(out), "--size", "16", "--workers", "0"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["images"], result["cached"], result["skipped"], result["size"]) == (8, 8, 0, 16)
    assert PixelCache.open(out).size == 16
    assert main(["--quiet", "prepare", "nih", str(root), str(out), "--size", "32"]) == 2
    assert "another image list or size" in _one_error_line(capsys.readouterr().err)
    assert main(["prepare", "nih", str(tmp_path / "nowhere"), str(tmp_path / "c2")]) == 2
    _one_error_line(capsys.readouterr().err)
    assert main(["prepare", "nih", str(root), str(tmp_path / "c3"), "--size", "2"]) == 2
    _one_error_line(capsys.readouterr().err)


def test_prepare_counts_unreadable_images(tmp_path, capsys):
    root = make_nih(tmp_path / "nih", n_patients=4, split_folders=False)
    next((root / "images").glob("*.png")).write_bytes(b"not a png")
    assert (
        main(["--quiet", "prepare", "nih", str(root), str(tmp_path / "c"), "--size", "16", "--workers", "0"])
        == 0
    )
    captured = capsys.readouterr()
    assert json.loads(captured.out)["skipped"] == 1
    assert "skipped.txt" in captured.err
    assert len((tmp_path / "c" / "skipped.txt").read_text().splitlines()) == 1


def test_bench_loader_prints_one_json_line(capsys):
    args = [
        "bench",
        "loader",
        "--n",
        "4",
        "--min-side",
        "64",
        "--max-side",
        "96",
        "--size",
        "32",
        "--batch-size",
        "2",
        "--workers",
        "0",
        "--epochs",
        "1",
    ]
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    for key in (
        "cache_images_per_s",
        "files_images_per_s",
        "speedup",
        "batch_size",
        "workers",
        "size",
        "images",
    ):
        assert key in out
    assert out["images"] == 4 and out["batch_size"] == 2 and out["cache_images_per_s"] > 0
    assert main(["bench", "loader", "--kind", "nih"]) == 2
    _one_error_line(capsys.readouterr().err)
