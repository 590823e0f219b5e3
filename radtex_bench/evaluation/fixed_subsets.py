"""Fixed labelled subsets from elsewhere (``evaluation.subsets_from``): an earlier run's ``subsets.json``
or a published split list, instead of drawing them.

Two formats are read:

* ``subsets.json`` as every run writes it: ``{"<seed>": {"<budget>": [image ids]}}``;
* a CSV with the columns ``seed,budget,image_id`` (others are ignored), one row per labelled image of
  each (seed, budget) subset.

Every subset must list ``budget`` distinct image ids, each an image of the evaluation set's labelled
training pool (the ids of ``splits.json``'s ``train``). The file decides which images each cell trains
on; the recipe decides which cells run: each (resolved) ``evaluation.budgets`` entry must be a budget of
the file, and ``evaluation.seeds = S`` takes the file's S smallest seeds, which keep their numbers (so a
rerun on an earlier run's subsets.json reproduces its results.csv). Nothing else is assumed: subsets
from elsewhere need not be nested or patient-wise, and are used as given.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError, DataError

if TYPE_CHECKING:
    from .data import EvalData

KEY = "evaluation.subsets_from"

#: ``{seed: {budget: [image ids]}}``
Listing = dict[int, dict[int, list[str]]]


def _whole(value: object, what: str, where: str, minimum: int) -> int:
    text = str(value).strip()
    if not text.isdigit() or int(text) < minimum:
        raise DataError(f"{where}: {what} {value!r} must be a whole number >= {minimum}")
    return int(text)


def read_listing(path: Path) -> Listing:
    """The subsets listed in ``path`` (JSON or CSV, by content), checked for shape only.

    Raises:
        ConfigError: the file does not exist.
        DataError: it is unreadable, or not one of the two formats.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            KEY, f"{path} not found; give an earlier run's subsets.json or a CSV seed,budget,image_id"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{KEY}: cannot read {path}: {exc}") from None
    if text.lstrip().startswith("{"):
        return _from_json(text, path)
    return _from_csv(text, path)


def _from_json(text: str, path: Path) -> Listing:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{KEY}: {path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    listing: Listing = {}
    for seed_key, by_budget in raw.items():
        seed = _whole(seed_key, "seed", f"{KEY}: {path}", 0)
        if not isinstance(by_budget, dict):
            raise DataError(f'{KEY}: {path}: seed "{seed_key}" must map budgets to lists of image ids')
        listing[seed] = {}
        for budget_key, ids in by_budget.items():
            budget = _whole(budget_key, "budget", f"{KEY}: {path}: seed {seed}", 2)
            if not isinstance(ids, list) or not all(isinstance(i, (str, int)) for i in ids):
                raise DataError(f"{KEY}: {path}: seed {seed}, budget {budget} must be a list of image ids")
            listing[seed][budget] = [str(i) for i in ids]
    return listing


def _from_csv(text: str, path: Path) -> Listing:
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in ("seed", "budget", "image_id") if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(
            f"{KEY}: {path} has no column {', '.join(missing)}; a subsets CSV has the header seed,budget,image_id "
            "(or give a subsets.json)"
        )
    listing: Listing = {}
    for line, row in enumerate(reader, start=2):
        where = f"{KEY}: {path}, line {line}"
        seed = _whole(row["seed"], "seed", where, 0)
        budget = _whole(row["budget"], "budget", where, 2)
        image_id = (row["image_id"] or "").strip()
        if not image_id:
            raise DataError(f"{where}: empty image_id")
        listing.setdefault(seed, {}).setdefault(budget, []).append(image_id)
    if not listing:
        raise DataError(f"{KEY}: {path} lists no subsets")
    return listing


def fixed_subsets(
    path: Path, data: EvalData, budgets: tuple[int, ...], seeds: int
) -> dict[int, dict[int, np.ndarray]]:
    """``{seed: {budget: sorted table rows}}`` for the recipe's ``budgets`` (resolved counts) and its
    first ``seeds`` seeds, read from ``path`` and validated against the labelled training pool.

    Raises:
        ConfigError: a recipe budget the file lacks, or more seeds than it holds.
        DataError: a subset whose size differs from its budget, a repeated id, or ids that are not
            labelled training-pool images (the message gives their number and a few of them).
    """
    listing = read_listing(path)
    file_seeds = sorted(listing)
    if seeds > len(file_seeds):
        raise ConfigError(
            "evaluation.seeds",
            f"{seeds}, but {path} holds {len(file_seeds)} seed(s) ({', '.join(map(str, file_seeds))}); "
            f"set evaluation.seeds to at most {len(file_seeds)}",
        )
    used = file_seeds[:seeds]
    for seed in used:
        absent = [b for b in budgets if b not in listing[seed]]
        if absent:
            raise ConfigError(
                "evaluation.budgets",
                f"budget(s) {', '.join(map(str, absent))} are not in {path} for seed {seed}, which lists "
                f"{', '.join(map(str, sorted(listing[seed])))}; set evaluation.budgets to budgets of the file",
            )
    row_of = {data.table.image_ids[int(r)]: int(r) for r in data.pool}
    unknown: dict[str, None] = {}
    for seed in file_seeds:
        for budget, ids in sorted(listing[seed].items()):
            if len(ids) != budget:
                raise DataError(
                    f"{KEY}: {path}: seed {seed}, budget {budget} lists {len(ids)} images; a subset must list "
                    "exactly `budget` images"
                )
            if len(set(ids)) != len(ids):
                repeated = next(i for i in ids if ids.count(i) > 1)
                raise DataError(f"{KEY}: {path}: seed {seed}, budget {budget} lists image '{repeated}' twice")
            unknown.update((i, None) for i in ids if i not in row_of)
    if unknown:
        raise DataError(f"{KEY}: {_describe_unknown(list(unknown), path, data)}")
    return {
        seed: {b: np.sort(np.array([row_of[i] for i in listing[seed][b]], dtype=np.int64)) for b in budgets}
        for seed in used
    }


def _describe_unknown(ids: list[str], path: Path, data: EvalData) -> str:
    """One line: how many ids are not labelled training-pool images, some of them, and what they are."""
    rows = {image_id: r for r, image_id in enumerate(data.table.image_ids)}
    held_out = set(data.val.tolist()) | set(data.test.tolist())
    kinds = {
        "validation/test images": 0,
        "training images without a scored label": 0,
        "not in the dataset": 0,
    }
    for image_id in ids:
        row = rows.get(image_id)
        if row is None:
            kinds["not in the dataset"] += 1
        elif row in held_out:
            kinds["validation/test images"] += 1
        else:
            kinds["training images without a scored label"] += 1
    examples = ", ".join(f"'{i}'" for i in ids[:3])
    what = "; ".join(f"{n} {kind}" for kind, n in kinds.items() if n)
    return (
        f"{len(ids)} image id(s) in {path} are not in the labelled training pool of the evaluation set "
        f"(e.g. {examples}; {what}); list only training images of this evaluation set (splits.json 'train')"
    )
