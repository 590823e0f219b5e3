"""Shared fixtures: small CPU-only settings and tiny datasets generated in tmp_path."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _threads():
    import torch

    torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # The synthetic dataset cache must never leak into (or out of) the user's ~/.cache.
    monkeypatch.setenv("RADTEX_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "radtex-cache"))


@pytest.fixture(scope="module")
def module_tmp(request, tmp_path_factory) -> Path:
    """A folder for the runs a module's tests share, removed when the module is done.

    Every pretraining writes ``last.ckpt`` and ``encoder.safetensors`` (~180 MB at resnet18), so the
    suite would hold many GB until pytest's own clean-up; kept only if one of the module's tests failed.
    """
    failed_before = request.session.testsfailed
    path = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    yield path
    if request.session.testsfailed == failed_before:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def registries_restored(monkeypatch):
    """What a test registers (objectives, dataset kinds, encoders, protocols) is gone after it, with the
    plug-in modules it imported: later tests (the docs-range checks and `list` walk every registered
    name) see the built-ins only."""
    import sys
    import tempfile

    from radtex_bench.data.kinds import DATASETS
    from radtex_bench.encoders import ENCODERS
    from radtex_bench.evaluation.protocols import PROTOCOLS
    from radtex_bench.objectives import OBJECTIVES

    for registered in (OBJECTIVES, DATASETS, ENCODERS, PROTOCOLS):
        monkeypatch.setattr(registered, "_items", dict(registered._items))
        monkeypatch.setattr(registered, "_origin", dict(registered._origin))
    modules = set(sys.modules)
    yield
    temporary = tempfile.gettempdir()
    for name in set(sys.modules) - modules:  # only the test's own modules, written in tmp_path
        if (getattr(sys.modules[name], "__file__", None) or "").startswith(temporary):
            del sys.modules[name]


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """A small synthetic dataset (manifest layout), generated once per test session."""
    from radtex_bench.data.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("synth") / "data", n=160, size=32, seed=0)


#: captioning sized for a 40-image manifest: trains in seconds on the CPU.
TINY_CAPTIONING = {"width": 32, "heads": 2, "vocab_size": 300, "min_frequency": 1}


def write_tiny_recipe(path: Path, root: Path, objectives: list, evaluation: dict, name: str, **extra) -> Path:
    """The recipe the end-to-end tests share: the manifest at ``root``, two pathologies, resnet18 at 32 px."""
    import yaml

    recipe = {
        "name": name,
        "data": {
            "pretrain": {"kind": "manifest", "root": str(root)},
            "pathologies": ["Cardiomegaly", "Edema"],
        },
        "encoder": {"name": "resnet18", "image_size": 32},
        "objectives": objectives,
        "evaluation": evaluation,
        **extra,
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def write_manifest(
    root: Path,
    n: int = 40,
    size: int = 32,
    seed: int = 0,
    pathologies=("Cardiomegaly", "Edema"),
    reports: bool = True,
    splits: bool = False,
) -> Path:
    """A minimal manifest dataset: random pixels, 2 images per patient, labels in {1, 0, -1, blank}."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    header = (
        ["image_path", "patient_id", "view"] + (["split"] if splits else []) + (["report"] if reports else [])
    )
    header += list(pathologies)
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        patient = f"p{i // 2}"
        row = [f"images/{i}.png", patient, "PA"]
        if splits:
            row.append(["train", "train", "train", "validate", "test"][(i // 2) % 5])
        if reports:
            row.append(f"FINDINGS: image {i} of {patient}. IMPRESSION: nothing acute.")
        row += [
            str(v) for v in rng.choice(["1", "0", "-1", ""], size=len(pathologies), p=[0.3, 0.5, 0.1, 0.1])
        ]
        rows.append(row)
    path = root / "manifest.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def manifest_dir(tmp_path) -> Path:
    write_manifest(tmp_path / "ds")
    return tmp_path / "ds"
