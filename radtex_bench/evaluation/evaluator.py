"""The label-budget evaluator: every encoder scored the same way, by every protocol of the recipe.

For each encoder: pooled features of the evaluation set are extracted once (when a protocol uses them);
each protocol (a registry member, :mod:`radtex_bench.evaluation.protocols`) then runs one cell per
(seed, budget) on that seed's labelled subset, or one cell at budget 0 when it needs no labels. Each
finished cell is saved (``DIR/eval/<label>/<protocol>/b<budget>_s<seed>.npz``) and keyed by the encoder
weights' hash, the heads' hash, the labelled subset and the protocol's settings, so ``--resume`` never
recomputes a finished cell and never reuses a stale one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.normalization import IMAGENET, Normalization
from ..encoders import file_sha256, load_encoder, read_metadata
from ..errors import UserError
from ..io import atomic_path, save_npz
from ..rundir import RunDir
from ..schema import to_plain
from .data import EvalData
from .features import cached_features, extract_features, table_fingerprint
from .protocols import PROTOCOLS, Cell, CellTask, EncoderUnderTest, Protocol

log = logging.getLogger("radtex_bench")

_EMPTY_ROWS = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Skip:
    """A protocol that could not score an objective, and why (report.md lists these)."""

    objective: str
    protocol: str
    reason: str


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def data_hash(data: EvalData) -> str:
    """Identifies what a cell was computed from besides the encoder and the subset: the evaluation
    images' ids and order, the scored pathologies and their labels after the uncertain policy (a probe
    fits the subset's labels and chooses on validation's), and the test images' reports (what the text
    protocols read). A label or report edited since a cell was computed makes ``--resume`` and ``merge``
    recompute it instead of mixing old fits with new labels."""
    digest = hashlib.sha256()
    digest.update("\0".join(data.table.image_ids).encode())
    digest.update(b"\1" + "\0".join(data.pathologies).encode())
    digest.update(
        b"\1" + np.ascontiguousarray(np.nan_to_num(data.labels, nan=-9.0), dtype=np.float32).tobytes()
    )
    frame = data.table.frame
    if "report" in frame.columns:
        digest.update(b"\1")
        for text in frame["report"].to_numpy()[data.test]:  # one at a time: MIMIC's test reports are MBs
            digest.update(str(text).encode() + b"\0")
    return digest.hexdigest()[:16]


def config_hash(config: Any) -> str:
    """Identifies a protocol's settings (a cell computed under other settings is recomputed)."""
    return _digest(json.dumps(to_plain(config), sort_keys=True).encode())


def build_protocols(
    names: tuple[str, ...],
    sections: Mapping[str, Any],
    data: EvalData,
    seed: int,
    device: torch.device,
    batch_size: int,
    workers: int,
) -> dict[str, Protocol]:
    """One instance per protocol name, each given only its own settings section and the scalars."""
    return {
        name: PROTOCOLS.get(name, where="evaluation.protocols")(
            data, sections[name], seed, device, batch_size=batch_size, workers=workers
        )
        for name in names
    }


class Evaluator:
    def __init__(
        self,
        run_dir: Path,
        data: EvalData,
        subsets: dict[int, dict[int, np.ndarray]],
        protocols: Mapping[str, Protocol],
        device: torch.device,
        batch_size: int = 128,
        workers: int = 0,
    ):
        self.run_dir = Path(run_dir)
        self.data = data
        self.data_hash = data_hash(data)
        self.subsets = subsets
        self.protocols = dict(protocols)
        self.device = device
        self.batch_size = batch_size
        self.workers = workers
        self.skipped: list[Skip] = []

    def cell_path(self, label: str, protocol: str, budget: int, seed: int) -> Path:
        return RunDir(self.run_dir).cell(label, protocol, budget, seed)

    @staticmethod
    def _load_cell(path: Path, key: dict[str, str]) -> Cell | None:
        if not path.exists():
            return None
        try:
            with np.load(path) as f:
                if any(k not in f or str(f[k]) != v for k, v in key.items()):
                    return None
                extra = {k.removeprefix("extra."): f[k] for k in f.files if k.startswith("extra.")}
                return Cell(
                    str(f["objective"]),
                    str(f["protocol"]),
                    int(f["budget"]),
                    int(f["seed"]),
                    f["aucs"],
                    f["scores"],
                    extra,
                )
        except Exception:
            return None

    @staticmethod
    def _save_cell(path: Path, cell: Cell, key: dict[str, str]) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                save_npz(
                    f,
                    objective=cell.objective,
                    protocol=cell.protocol,
                    budget=cell.budget,
                    seed=cell.seed,
                    aucs=cell.aucs,
                    scores=cell.scores,
                    **{f"extra.{k}": v for k, v in cell.extra.items()},
                    **key,
                )

    def features(self, label: str, encoder_path: Path, weights_hash: str) -> np.ndarray:
        fingerprint = table_fingerprint(self.data.table, self.data.image_size, self.data.cache)

        def compute() -> np.ndarray:
            features = extract_features(
                load_encoder(encoder_path),
                self.data.table,
                self.data.image_size,
                self.device,
                self.batch_size,
                self.data.cache,
                self.workers,
                description=f"features {label}",
            )  # [N, D]
            broken = int((~np.isfinite(features).all(axis=1)).sum())
            if broken:  # never cached: a probe cannot be fitted on them, and a rerun must recompute
                raise UserError(
                    f"objective '{label}': its encoder gives non-finite (NaN/inf) features for {broken} of "
                    f"{len(features)} evaluation images, so nothing can be scored: its pretraining diverged "
                    "although its loss stayed finite (e.g. weight_decay too strong for its lr); lower its "
                    "train.lr or train.weight_decay (or add warmup_steps) and run into a new --out"
                )
            return features

        return cached_features(RunDir(self.run_dir).features(label), weights_hash, fingerprint, compute)

    def encoder_under_test(
        self,
        label: str,
        encoder_path: Path,
        load_model: Callable[[], Any] | None = None,
        capabilities: frozenset[str] = frozenset(),
        model_hash: str = "",
        unavailable: str = "",
    ) -> EncoderUnderTest:
        weights_hash = file_sha256(encoder_path)
        cache: dict[str, np.ndarray] = {}

        def features() -> np.ndarray:
            if "features" not in cache:
                cache["features"] = self.features(label, encoder_path, weights_hash)
            return cache["features"]

        return EncoderUnderTest(
            label=label,
            path=Path(encoder_path),
            weights_hash=weights_hash,
            features=features,
            load_encoder=lambda: load_encoder(encoder_path),
            load_model=load_model,
            capabilities=frozenset(capabilities),
            model_hash=model_hash,
            unavailable=unavailable,
            normalization=encoder_normalization(encoder_path),
        )

    def tasks(self, protocol: Protocol, encoder: EncoderUnderTest) -> list[CellTask]:
        if not protocol.labelled:
            return [CellTask(encoder, 0, 0, _EMPTY_ROWS)]
        return [
            CellTask(encoder, budget, seed, rows)
            for seed, by_budget in self.subsets.items()
            for budget, rows in by_budget.items()
        ]

    def evaluate(self, encoder: EncoderUnderTest) -> list[Cell]:
        """Every cell of one encoder; finished cells are loaded, not recomputed."""
        cells, todo = [], []
        for name, protocol in self.protocols.items():
            reason = protocol.skip_reason(encoder)
            if reason:
                self.skipped.append(Skip(encoder.label, name, reason))
                log.info("%s: protocol %s skipped: %s", encoder.label, name, reason)
                continue
            settings = config_hash(protocol.config)
            for task in self.tasks(protocol, encoder):
                key = {
                    "weights": encoder.weights_hash,
                    # Only protocols that use the whole model depend on the heads and tokenizer.
                    "model": encoder.model_hash if protocol.requires else "",
                    "subset": _digest(np.asarray(task.rows, dtype=np.int64).tobytes()),
                    "settings": settings,
                    "data": self.data_hash,
                }
                path = self.cell_path(encoder.label, name, task.budget, task.seed)
                cell = self._load_cell(path, key)
                if cell is None:
                    todo.append((protocol, task, path, key))
                else:
                    cells.append(cell)
        if cells:
            log.info("%s: %d evaluation cells reused", encoder.label, len(cells))
        for protocol, task, path, key in todo:
            cell = protocol.run(task)
            self._save_cell(path, cell, key)
            cells.append(cell)
        if todo:
            log.info("%s: %d evaluation cells computed", encoder.label, len(todo))
        return cells


def encoder_normalization(path: Path) -> Normalization:
    """The input normalisation named in an ``encoder.safetensors``' metadata (ImageNet when absent)."""
    meta = read_metadata(Path(path))
    return Normalization.from_json(meta["normalization"]) if meta.get("normalization") else IMAGENET
