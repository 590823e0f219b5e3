"""The evaluation set: patient-level train pool / validation / test, labels, and budget subsets."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import Recipe
from ..data.table import ImageTable
from ..errors import ConfigError, DataError
from ..seeds import derive_seed
from .budgets import resolve_budgets, sample_budget_subsets
from .fixed_subsets import fixed_subsets

log = logging.getLogger("radtex_bench")


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
    #: ``evaluation.budgets`` resolved against the pool: distinct image counts, ascending.
    budgets: tuple[int, ...] = ()
    #: ``{percentage entry: image count}`` (recipe.yaml records it as ``evaluation.resolved_budgets``).
    resolved_budgets: dict[str, int] = field(default_factory=dict)
    #: Scored pathologies whose validation images lack a class, as sentences for report.md.
    validation_gaps: list[str] = field(default_factory=list)

    def ids(self, rows: Sequence[int]) -> list[str]:
        ids = self.table.image_ids
        return [ids[int(i)] for i in rows]

    @property
    def test_patients(self) -> np.ndarray:
        return self.table.patient_ids[self.test]


def build_eval_data(recipe: Recipe, table: ImageTable, where: str) -> EvalData:
    pathologies = list(recipe.eval_pathologies)
    key = "evaluation.pathologies" if recipe.evaluation.pathologies else "data.pathologies"
    absent = [p for p in pathologies if not table.has_label(p)]
    if absent:
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
    definite = table.label_matrix(pathologies, "ignore")  # uncertain labels left out
    check_both_classes(labels, pathologies, test, where, key, definite, recipe.data.uncertain)
    gaps = validation_gaps(labels, pathologies, val)
    for gap in gaps:
        log.warning("%s: %s", where, gap)
    budgets, resolved = resolve_pool_budgets(recipe, len(pool))
    cache = (recipe.data.evaluate or recipe.data.pretrain).options.cache
    return EvalData(
        table, pathologies, labels, pool, val, test, recipe.encoder.image_size, cache, budgets, resolved, gaps
    )


def resolve_pool_budgets(recipe: Recipe, n_pool: int) -> tuple[tuple[int, ...], dict[str, int]]:
    """``evaluation.budgets`` as image counts for a pool of ``n_pool`` labelled training images.

    Raises:
        ConfigError: a count larger than the pool, or a percentage that resolves to another count than
            the one ``evaluation.resolved_budgets`` records (the evaluation data changed).
    """
    evaluation = recipe.evaluation
    budgets, resolved = resolve_budgets(evaluation.budgets, n_pool)
    for percent, count in (evaluation.resolved_budgets or {}).items():
        if resolved.get(percent, count) != count:
            raise ConfigError(
                f"evaluation.resolved_budgets.{percent}",
                f"records {count} images, but {percent} of this evaluation set's {n_pool} labelled training "
                f"images is {resolved[percent]}: the data changed since the recipe was written; delete "
                "evaluation.resolved_budgets to use the new counts, or use the original data",
            )
    if budgets[-1] > n_pool:
        raise ConfigError(
            "evaluation.budgets",
            f"budget {budgets[-1]} is larger than the {n_pool} labelled training images of the evaluation set; "
            "lower it or use a larger dataset",
        )
    if len(budgets) < len(evaluation.budgets):
        log.warning(
            "evaluation.budgets %s resolve to %s images (entries giving the same count are one budget)",
            list(evaluation.budgets),
            list(budgets),
        )
    return budgets, resolved


def record_budgets(recipe: Recipe, data: EvalData) -> Recipe:
    """``recipe`` with ``evaluation.resolved_budgets`` filled in (what recipe.yaml records); unchanged
    when no budget is a percentage."""
    if not data.resolved_budgets:
        return recipe
    evaluation = dataclasses.replace(recipe.evaluation, resolved_budgets=dict(data.resolved_budgets))
    return dataclasses.replace(recipe, evaluation=evaluation)


def _missing_class(column: np.ndarray) -> str | None:
    """``"positive"`` / ``"negative"`` when ``column`` (1 / 0 / NaN) lacks that class, else None."""
    for value, what in ((1, "positive"), (0, "negative")):
        if not (column == value).any():
            return what
    return None


def check_both_classes(
    labels: np.ndarray,
    pathologies: Sequence[str],
    test: np.ndarray,
    where: str,
    key: str,
    definite: np.ndarray | None = None,
    policy: str = "zeros",
) -> None:
    """Refuse, before any work, a scored pathology whose test images lack a positive or a negative.

    AUROC (and AUPRC, F1) are undefined without both classes: the pathology could not be scored at all
    and would silently drop out of every macro average. CheXpert's ``No Finding`` (1 or blank, never 0)
    is the classic case. ``definite`` (the labels without the uncertain ones, NaN there) also refuses a
    class that only the uncertain policy supplies (``No Finding``'s hedged labels read as negatives by
    ``data.uncertain: zeros``): such an AUROC ranks positives against hedged cases alone.
    """
    for j, pathology in enumerate(pathologies):
        column = labels[test, j]
        what = _missing_class(column)
        if what:
            other = "negative" if what == "positive" else "positive"
            raise DataError(
                f"{where}: no {what} '{pathology}' image in the test split ({int((column == (what == 'negative')).sum())} "
                f"{other}, {int(np.isnan(column).sum())} unlabelled), so its AUROC is undefined; remove it from "
                f"{key}, change data.uncertain, or use more data"
            )
        what = _missing_class(definite[test, j]) if definite is not None else None
        if what:
            value = 1 if what == "positive" else 0
            uncertain = int(((column == value) & np.isnan(definite[test, j])).sum())
            other = "negative" if what == "positive" else "positive"
            raise DataError(
                f"{where}: no definite {what} '{pathology}' image in the test split, only {uncertain} uncertain "
                f"label(s) that data.uncertain: {policy} counts as {what} ({int((column == 1 - value).sum())} "
                f"{other}), so its AUROC would rank {other}s against hedged reports alone; remove it from "
                f"{key}, or use more data"
            )


def validation_gaps(labels: np.ndarray, pathologies: Sequence[str], val: np.ndarray) -> list[str]:
    """Scored pathologies whose validation images lack a class: the test metric is still defined, but
    the choices made on validation cannot be made for them, so report.md says so (never silently).

    The ``linear`` probe then uses its fallback regularisation (C = 1e-2) for that pathology; the
    validation macro AUROC that ``finetune`` stops on averages the other pathologies.
    """
    gaps = []
    for j, pathology in enumerate(pathologies):
        what = _missing_class(labels[val, j])
        if what:
            gaps.append(
                f"no {what} '{pathology}' image in the validation split: the linear probe could not choose its "
                f"regularisation for it (C = 1e-2 was used) and fine-tuning's early stopping ignores it"
            )
    return gaps


def draw_subsets(recipe: Recipe, data: EvalData) -> dict[int, dict[int, np.ndarray]]:
    """``{seed: {budget: table rows}}``, nested across budgets, by patient, from the training pool; or
    read from ``evaluation.subsets_from`` (:mod:`~radtex_bench.evaluation.fixed_subsets`)."""
    budgets = data.budgets or resolve_pool_budgets(recipe, len(data.pool))[0]
    if recipe.evaluation.subsets_from is not None:
        return fixed_subsets(Path(recipe.evaluation.subsets_from), data, budgets, recipe.evaluation.seeds)
    out = {}
    for s in range(recipe.evaluation.seeds):
        picked = sample_budget_subsets(
            data.table.patient_ids[data.pool],
            data.labels[data.pool],
            budgets,
            derive_seed(recipe.seed, "subset", s),
        )
        out[s] = {b: data.pool[rows] for b, rows in picked.items()}
    return out
