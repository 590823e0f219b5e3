"""Identical runs write identical files (issue 11, kind 10).

``encoder.safetensors`` used to differ between two equal runs because safetensors serialises its
metadata from a hash map (the feature cache is keyed by that file's SHA-256, so it missed); ``.npz``
files carried the time of writing; ``last.ckpt`` named its archive folder after a random temporary file
and stored unseeded global RNG states. Every artefact whose content is the same must now have the same
bytes.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from conftest import TINY_CAPTIONING, write_manifest, write_tiny_recipe
from safetensors import safe_open
from safetensors.torch import load_file, save

from radtex_bench.encoders import build_encoder, file_sha256, load_encoder, save_encoder
from radtex_bench.io import canonical_safetensors, save_npz

#: metrics.jsonl fields that measure the machine, not the training: wall-clock time of the record,
#: throughput (depends on load and timer resolution) and peak memory (process-wide RSS on the CPU,
#: allocator state on a GPU). Every other field (step, epoch, loss, lr, grad_norm, ...) must be equal.
TIME_DEPENDENT_METRICS = ("time", "images_per_s", "peak_mem_mb")
#: Files whose content is a record of when things happened: run.log has a timestamp on every line.
TIME_DEPENDENT_FILES = ("run.log",)

TENSORS = {
    "conv1.weight": torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2),
    "bn1.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
    "fc.bias": torch.tensor([0.5, -1.5], dtype=torch.float16),
    "empty": torch.zeros(0, 3),
}


def _read_by_the_spec(data: bytes) -> tuple[dict, dict[str, torch.Tensor]]:
    """An independent reader of the safetensors format: u64 LE header size, JSON header, raw bytes."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    assert data[8:9] == b"{" and (8 + n) % 8 == 0
    body = data[8 + n :]
    dtypes = {"F32": torch.float32, "F16": torch.float16, "I64": torch.int64}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        chunk = bytearray(body[start:end])
        out[name] = (
            torch.frombuffer(chunk, dtype=dtypes[info["dtype"]]).reshape(info["shape"])
            if chunk
            else (torch.zeros(info["shape"], dtype=dtypes[info["dtype"]]))
        )
    return header.get("__metadata__", {}), out


def test_safetensors_header_is_canonical_and_still_readable(tmp_path):
    meta = {f"key{i}": f"value {i}" for i in range(12)} | {"encoder": "resnet18", "label": "clip"}
    raws = [save(TENSORS, metadata=dict(sorted(meta.items(), reverse=bool(i % 2)))) for i in range(8)]
    canon = {canonical_safetensors(raw) for raw in raws}
    assert len(canon) == 1  # whatever order the writer chose
    data = canon.pop()
    assert canonical_safetensors(data) == data  # idempotent
    path = tmp_path / "w.safetensors"
    path.write_bytes(data)
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == meta
    loaded = load_file(str(path))
    spec_meta, by_spec = _read_by_the_spec(data)
    assert spec_meta == meta and list(spec_meta) == sorted(meta)
    for name, tensor in TENSORS.items():
        assert torch.equal(loaded[name], tensor) and loaded[name].dtype == tensor.dtype
        assert torch.equal(by_spec[name], tensor)


def test_save_encoder_writes_the_same_bytes_every_time(tmp_path):
    torch.manual_seed(0)
    encoder = build_encoder("resnet18")
    hashes = {
        save_encoder(encoder, tmp_path / f"{i}.safetensors", {"objective": "clip", "label": "c"})
        for i in range(3)
    }
    assert len(hashes) == 1 and hashes == {file_sha256(tmp_path / "0.safetensors")}
    assert {(tmp_path / f"{i}.safetensors").read_bytes() for i in range(3)} == {
        (tmp_path / "0.safetensors").read_bytes()
    }
    back = load_encoder(tmp_path / "0.safetensors")
    with torch.no_grad():
        for (k, a), (_, b) in zip(encoder.state_dict().items(), back.state_dict().items()):
            assert torch.equal(a, b), k
    # And a reloaded encoder saved again hashes the same (the feature cache of a resumed run hits).
    assert save_encoder(back, tmp_path / "again.safetensors", {"objective": "clip", "label": "c"}) in hashes


def test_save_npz_is_deterministic_atomic_and_loads(tmp_path):
    arrays = {"features": np.arange(6, dtype=np.float32).reshape(2, 3), "weights": "abc", "budget": 10}
    save_npz(tmp_path / "a.npz", **arrays)
    with open(tmp_path / "b.npz", "wb") as f:
        save_npz(f, **arrays)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.npz") as zf:
        assert [i.filename for i in zf.infolist()] == ["features.npy", "weights.npy", "budget.npy"]
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    with np.load(tmp_path / "a.npz") as f:
        assert np.array_equal(f["features"], arrays["features"]) and str(f["weights"]) == "abc"
        assert int(f["budget"]) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npz"]  # no temporary file left


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_two_runs_of_one_recipe_write_identical_files(tmp_path):
    """Two real runs (separate processes, different hash seeds), with every built-in text protocol:
    every file byte for byte, except the time-dependent ones listed above."""
    write_manifest(tmp_path / "ds", n=40)
    clip = {"width": 32, "heads": 2, "layers": 1, "embed_dim": 16, "vocab_size": 200, "min_frequency": 1}
    recipe = write_tiny_recipe(
        tmp_path / "r.yaml",
        tmp_path / "ds",
        [
            {"name": "random"},
            {"name": "clip", "params": clip, "train": {"max_steps": 1, "batch_size": 8, "log_every": 1}},
            {"name": "captioning", "params": TINY_CAPTIONING, "train": {"max_steps": 1, "batch_size": 8}},
        ],
        # The text protocols too: retrieval and generation bootstrap over reports, generation decodes.
        {
            "budgets": [6],
            "seeds": 1,
            "bootstrap": 20,
            "protocols": ["linear", "zeroshot", "retrieval", "generation"],
        },
        name="repro",
    )
    for out, hash_seed in (("a", "1"), ("b", "2")):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "radtex_bench",
                "--quiet",
                "run",
                str(recipe),
                "--out",
                str(tmp_path / out),
            ],
            check=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed, "HF_HUB_OFFLINE": "1"},
            timeout=600,
        )
    a, b = tmp_path / "a", tmp_path / "b"
    files = _files(a)
    assert files == _files(b)
    names = {str(p) for p in files}
    assert {
        "pretrain/clip/encoder.safetensors",
        "pretrain/clip/last.ckpt",
        "plots/auc_vs_budget.png",
        "retrieval.csv",
        "generation.csv",
        "generations.csv",
        "pretrain/clip/heads.safetensors",
        "pretrain/captioning/heads.safetensors",
    } <= names
    assert any(n.startswith("eval/clip/zeroshot/") for n in names)
    assert any(n.startswith("features/") for n in names) and any(n.startswith("eval/") for n in names)
    different = []
    for rel in files:
        if str(rel) in TIME_DEPENDENT_FILES:
            continue
        if rel.name == "metrics.jsonl":

            def strip(path: Path) -> list[dict]:
                return [
                    {k: v for k, v in json.loads(line).items() if k not in TIME_DEPENDENT_METRICS}
                    for line in path.read_text().splitlines()
                ]

            if strip(a / rel) != strip(b / rel):
                different.append(str(rel))
        elif (a / rel).read_bytes() != (b / rel).read_bytes():
            different.append(str(rel))
    assert different == []
