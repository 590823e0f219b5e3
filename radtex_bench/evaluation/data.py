"""The evaluation set: patient-level train pool / validation / test, labels, and budget subsets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..config import Recipe
from ..data.table import ImageTable
from ..errors import ConfigError, DataError
from ..seeds import derive_seed
from .budgets import sample_budget_subsets


@dataclass
class EvalData:
    table: ImageTable
    pathologies: list[str]
    labels: np.ndarray  # [N, P] after the uncertain policy; NaN = missing
    pool: np.ndarray  # rows of the training split with at least one label
    val: np.ndarray
    test: np.ndarray
    image_size: int
    cache: str | None

    def ids(self, rows: Sequence[int]) -> list[str]:
        ids = self.table.image_ids
        return [ids[int(i)] for i in rows]

    @property
    def test_patients(self) -> np.ndarray:
        return self.table.patient_ids[self.test]


def build_eval_data(recipe: Recipe, table: ImageTable, where: str) -> EvalData:
    pathologies = list(recipe.eval_pathologies)
    absent = [p for p in pathologies if not table.has_label(p)]
    if absent:
        key = "evaluation.pathologies" if recipe.evaluation.pathologies else "data.pathologies"
        raise ConfigError(
            key,
            f"{', '.join(absent)} not labelled in the evaluation dataset ({where}); it has: "
            f"{', '.join(table.label_names) or 'no label columns'}",
        )
    labels = table.label_matrix(pathologies, recipe.data.uncertain)
    split = table.frame["split"].to_numpy()
    train = np.flatnonzero(split == "train")
    pool = train[~np.isnan(labels[train]).all(axis=1)]
    val, test = np.flatnonzero(split == "validate"), np.flatnonzero(split == "test")
    for name, rows in (("validate", val), ("test", test), ("train", pool)):
        if len(rows) == 0:
            raise DataError(
                f"{where}: the evaluation set has no labelled '{name}' images; it needs train, "
                "validate and test patients (check the split column or split_fractions)"
            )
    for j, name in enumerate(pathologies):
        column = labels[test, j]
        if not (column == 1).any():
            raise DataError(
                f"{where}: no positive '{name}' image in the test split, so its AUROC is undefined; remove it "
                f"from {'evaluation' if recipe.evaluation.pathologies else 'data'}.pathologies or use more data"
            )
    largest = max(recipe.evaluation.budgets)
    if largest > len(pool):
        raise ConfigError(
            "evaluation.budgets",
            f"budget {largest} is larger than the {len(pool)} labelled training images of the evaluation set; "
            "lower it or use a larger dataset",
        )
    cache = (recipe.data.evaluate or recipe.data.pretrain).options.cache
    return EvalData(table, pathologies, labels, pool, val, test, recipe.encoder.image_size, cache)


def draw_subsets(recipe: Recipe, data: EvalData) -> dict[int, dict[int, np.ndarray]]:
    """``{seed: {budget: table rows}}``, nested across budgets, by patient, from the training pool."""
    out = {}
    for s in range(recipe.evaluation.seeds):
        picked = sample_budget_subsets(
            data.table.patient_ids[data.pool],
            data.labels[data.pool],
            recipe.evaluation.budgets,
            derive_seed(recipe.seed, "subset", s),
        )
        out[s] = {b: data.pool[rows] for b, rows in picked.items()}
    return out
