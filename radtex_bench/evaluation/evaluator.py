"""The label-budget evaluator: every encoder scored the same way.

For each encoder: features of the evaluation set are extracted once; for each protocol, seed and
budget a cell fits on that seed's labelled subset and scores the test split. Each finished cell is
saved (``DIR/eval/<label>/<protocol>/b<budget>_s<seed>.npz``: per-pathology test scores and AUROCs),
keyed by the encoder weights' hash and the subset, so ``--resume`` never recomputes a finished cell.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from ..config import Recipe
from ..encoders import file_sha256, load_encoder
from ..io import atomic_path
from .data import EvalData
from .features import cached_features, extract_features, table_fingerprint
from .knn import knn_cell
from .linear import Standardiser, probe_pathology
from .stats import auroc

log = logging.getLogger("radtex_bench")


@dataclass
class Cell:
    objective: str
    protocol: str
    budget: int
    seed: int
    aucs: np.ndarray  # [P], NaN = missing
    scores: np.ndarray  # [N_test, P] test scores, NaN columns where missing


def _subset_hash(rows: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(rows, dtype=np.int64).tobytes()).hexdigest()[:16]


class Evaluator:
    def __init__(
        self,
        recipe: Recipe,
        run_dir: Path,
        data: EvalData,
        subsets: dict[int, dict[int, np.ndarray]],
        device: torch.device,
        workers: int = 0,
    ):
        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self.data = data
        self.subsets = subsets
        self.device = device
        self.workers = workers
        self._scalers: dict[str, Standardiser] = {}

    def cell_path(self, label: str, protocol: str, budget: int, seed: int) -> Path:
        return self.run_dir / "eval" / label / protocol / f"b{budget}_s{seed}.npz"

    def _load_cell(self, path: Path, key: dict[str, str]) -> Cell | None:
        if not path.exists():
            return None
        try:
            with np.load(path) as f:
                if any(str(f[k]) != v for k, v in key.items()):
                    return None
                return Cell(
                    str(f["objective"]),
                    str(f["protocol"]),
                    int(f["budget"]),
                    int(f["seed"]),
                    f["aucs"],
                    f["scores"],
                )
        except Exception:
            return None

    def _save_cell(self, path: Path, cell: Cell, key: dict[str, str]) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    objective=cell.objective,
                    protocol=cell.protocol,
                    budget=cell.budget,
                    seed=cell.seed,
                    aucs=cell.aucs,
                    scores=cell.scores,
                    **key,
                )

    def features(self, label: str, encoder_path: Path, weights_hash: str) -> np.ndarray:
        fingerprint = table_fingerprint(self.data.table, self.data.image_size, self.data.cache)

        def compute() -> np.ndarray:
            encoder = load_encoder(encoder_path)
            return extract_features(
                encoder,
                self.data.table,
                self.data.image_size,
                self.device,
                self.recipe.evaluation.batch_size,
                self.data.cache,
                self.workers,
                description=f"features {label}",
            )

        return cached_features(self.run_dir / "features" / f"{label}.npz", weights_hash, fingerprint, compute)

    def evaluate(self, label: str, encoder_path: Path) -> list[Cell]:
        """Every (protocol, budget, seed) cell of one encoder; finished cells are loaded, not refitted."""
        weights_hash = file_sha256(encoder_path)
        cells, todo = [], []
        for protocol in self.recipe.evaluation.protocols:
            for seed, by_budget in self.subsets.items():
                for budget, rows in by_budget.items():
                    key = {"weights": weights_hash, "subset": _subset_hash(rows)}
                    path = self.cell_path(label, protocol, budget, seed)
                    cell = self._load_cell(path, key)
                    if cell is None:
                        todo.append((protocol, seed, budget, rows, path, key))
                    else:
                        cells.append(cell)
        if cells:
            log.info("%s: %d evaluation cells reused", label, len(cells))
        if not todo:
            return cells
        features = None
        if any(t[0] in ("linear", "knn") for t in todo):
            features = self.features(label, encoder_path, weights_hash)
        for protocol, seed, budget, rows, path, key in todo:
            if protocol in ("linear", "knn"):
                # Probes are many small BLAS calls: one thread each is ~10x faster than a thread pool
                # that thrashes (and frees the other cores for anything else running).
                with threadpool_limits(1):
                    if protocol == "linear":
                        cell = self.linear_cell(label, features, budget, seed, rows)
                    else:
                        cell = knn_cell(self, label, features, budget, seed, rows)
            else:
                from .finetune import finetune_cell

                cell = finetune_cell(self, label, encoder_path, budget, seed, rows)
            self._save_cell(path, cell, key)
            cells.append(cell)
        log.info("%s: %d evaluation cells computed", label, len(todo))
        return cells

    def linear_cell(self, label: str, features: np.ndarray, budget: int, seed: int, rows: np.ndarray) -> Cell:
        d = self.data
        scale = self._standardiser(label, features)
        train_x, val_x, test_x = scale(features[rows]), scale(features[d.val]), scale(features[d.test])
        aucs = np.full(len(d.pathologies), np.nan)
        scores = np.full((len(d.test), len(d.pathologies)), np.nan, dtype=np.float32)
        for j in range(len(d.pathologies)):
            s, _ = probe_pathology(train_x, d.labels[rows, j], val_x, d.labels[d.val, j], test_x)
            if s is not None:
                scores[:, j] = s
                aucs[j] = auroc(s, d.labels[d.test, j])
        return Cell(label, "linear", budget, seed, aucs, scores)

    def _standardiser(self, label: str, features: np.ndarray) -> Standardiser:
        if label not in self._scalers:
            self._scalers[label] = Standardiser(features[self.data.pool])
        return self._scalers[label]
