"""``radtex-bench merge``: which run folders may be combined, the merged recipe, and what is copied.

A comparison of many objectives is often run as one cluster job per objective (``run --only LABEL``);
each job's folder records the whole recipe, the evaluation split, the labelled subsets and its own
objectives' weights and evaluation cells. Merging copies every folder's ``pretrain/<label>/``,
``eval/<label>/`` and ``features/<label>.npz`` into one folder and rebuilds every table through the code
path a run uses (``api.evaluate_and_report``), so the result is the folder one run of all the
objectives would have written: the cells are found in their caches (keyed by weights, model, subset
and settings) and nothing is retrained or rescored.

**Pairable.** Comparisons are paired (same test patients, same labelled subsets, same bootstrap
resamples), so folders may be merged only if everything that fixes those, or the encoders' starting
point, is the same: the recipe sections in :data:`PAIRED_SECTIONS` (``seed``; ``data``: datasets,
pathologies, label policy; ``encoder``; ``evaluation``: budgets, seeds, protocols and their settings,
bootstrap, confidence, fixed subsets; ``plugins``) and the files ``splits.json`` and ``subsets.json``.
The first difference is named in the error (``seed``, ``evaluation.bootstrap``, ``splits.json``).
``name`` and ``logging`` may differ (the first folder's are kept). Objective lists may differ (a
folder made with a recipe that gained an objective later): the merged recipe lists the first folder's
objectives, then the others' new ones, and takes each held objective's settings from the folder that
holds it. A label held by two folders is accepted only when both hold the same thing (same settings,
same encoder and heads files); otherwise the merge is refused.

**Data.** The tables need the evaluation labels and test patients, which the run folder does not store:
the merge re-reads the datasets named by the recipe (``data.pretrain`` / ``data.evaluate``, on the same
paths as the jobs used) and checks that the split and subsets it derives are those of the folders
(``splits.json``, ``subsets.json``); a dataset that changed since is refused. Re-reading rather than
storing labels keeps one source of truth (the dataset) and lets the merged folder be resumed like any
run folder.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError
from .rundir import (
    ENCODER_FILE,
    HEADS_FILE,
    PAIRED_FILES,
    TOKENIZER_FILE,
    RunDir,
    first_difference,
    holds_only_logs,
    recipe_labels,
)

#: Recipe sections that must be equal in every merged folder (they fix splits, subsets, resamples and
#: the initial weights).
PAIRED_SECTIONS = ("seed", "data", "encoder", "evaluation", "plugins")
#: Files that must be equal in every merged folder.
#: Files written only by atomic replacement (never changed in place): hard-linked when possible.
_LINKABLE = (".ckpt", ".safetensors", ".npz")


@dataclass(frozen=True)
class Source:
    """One folder to merge: its stored (plain) recipe and the labels it holds."""

    dir: Path
    recipe: dict[str, Any]
    held: tuple[str, ...]

    @property
    def paths(self) -> RunDir:
        return RunDir(self.dir)

    def spec(self, label: str) -> dict[str, Any]:
        return next(o for o in self.recipe["objectives"] if (o.get("label") or o.get("name")) == label)


@dataclass(frozen=True)
class MergePlan:
    """The merged recipe (plain data), which folder each held objective comes from, and the held labels."""

    recipe: dict[str, Any]
    holder: dict[str, Source]
    #: Held labels in the merged recipe's order.
    hold: tuple[str, ...]
    #: True when the merged folder holds only some of its recipe's objectives.
    selection: bool


def read_source(folder: Path) -> Source:
    """A finished run folder, or a :class:`UserError` saying why it cannot be merged."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"merge: {folder} is not a folder; pass run folders (the --out of radtex-bench run)")
    paths = RunDir(folder)
    stored = paths.stored_recipe()
    if stored is None:
        raise UserError(f"merge: {folder} holds no radtex-bench run (no recipe.yaml)")
    held = tuple(paths.holds(stored))
    for label in held:
        if not paths.encoder(label).exists():
            raise UserError(
                f"merge: objective '{label}' of {folder} has not finished pretraining; finish it with "
                f"radtex-bench run {paths.recipe} --out {folder} --resume"
            )
    if not paths.summary.exists():
        raise UserError(
            f"merge: {folder} has not finished its evaluation (no summary.csv); finish it with "
            f"radtex-bench run {paths.recipe} --out {folder} --resume"
        )
    return Source(folder, stored, held)


def _at(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(tree, dict):
            tree = tree.get(part)
        elif isinstance(tree, list) and part.isdigit() and int(part) < len(tree):
            tree = tree[int(part)]
        else:
            return None
    return tree


def _shown(a: Any, b: Any) -> str:
    text = f" ({a!r} vs {b!r})"
    return text if len(text) <= 80 else ""


def check_pairable(sources: Sequence[Source]) -> None:
    """Refuse folders whose comparisons would not be paired, naming the first difference."""
    first = sources[0]
    for other in sources[1:]:
        for section in PAIRED_SECTIONS:
            diff = first_difference(first.recipe.get(section), other.recipe.get(section), section)
            if diff:
                raise UserError(
                    f"merge: {first.dir} and {other.dir} differ in {diff}"
                    f"{_shown(_at(first.recipe, diff), _at(other.recipe, diff))}; only runs of one recipe can "
                    "be merged (their splits, labelled subsets and bootstrap resamples must be the same)"
                )
        for name in PAIRED_FILES:
            a, b = first.dir / name, other.dir / name
            if _json(a) != _json(b):
                raise UserError(
                    f"merge: {first.dir} and {other.dir} differ in {name}; their evaluation data changed "
                    "between the runs, so their results cannot be paired: rerun one of them"
                )


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"merge: {path} not found; is {path.parent} a finished run?") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"merge: {path} is unreadable ({exc})") from None


def _fingerprint(source: Source, label: str) -> str:
    """Identifies what a folder holds for ``label``: its encoder, heads and tokenizer files."""
    digest = hashlib.sha256()
    folder = source.paths.pretrain(label)
    for name in (ENCODER_FILE, HEADS_FILE, TOKENIZER_FILE):
        path = folder / name
        digest.update(name.encode())
        if path.exists():
            file_digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    file_digest.update(block)
            digest.update(file_digest.digest())
    return digest.hexdigest()


def plan_merge(sources: Sequence[Source]) -> MergePlan:
    """The merged recipe and the holder of every objective (:func:`check_pairable` first)."""
    if len(sources) < 2:
        raise UserError("merge: give at least two run folders")
    given: dict[Path, Path] = {}
    for source in sources:
        first = given.get(source.dir.resolve())
        if first is not None:
            also = "" if str(first) == str(source.dir) else f" (as {first} and {source.dir})"
            raise UserError(f"merge: the folder {first} is given twice{also}; give each run folder once")
        given[source.dir.resolve()] = source.dir
    check_pairable(sources)
    holder: dict[str, Source] = {}
    for source in sources:
        for label in source.held:
            if label not in holder:
                holder[label] = source
                continue
            earlier = holder[label]
            diff = first_difference(earlier.spec(label), source.spec(label), f"objective '{label}'")
            if diff or _fingerprint(earlier, label) != _fingerprint(source, label):
                what = diff or f"objective '{label}' weights"
                raise UserError(
                    f"merge: {earlier.dir} and {source.dir} both hold objective '{label}', and they differ "
                    f"({what}); merge only one of them, or rerun one with another label"
                )
    recipe = copy.deepcopy(sources[0].recipe)
    order = recipe_labels(recipe)
    entries = {label: spec for label, spec in zip(order, recipe["objectives"])}
    for source in sources[1:]:
        for label, spec in zip(recipe_labels(source.recipe), source.recipe["objectives"]):
            if label not in entries:
                order.append(label)
                entries[label] = spec
    for label, source in holder.items():
        entries[label] = source.spec(label)
    recipe["objectives"] = [copy.deepcopy(entries[label]) for label in order]
    hold = tuple(label for label in order if label in holder)
    return MergePlan(recipe, holder, hold, list(hold) != order)


def check_out(out: Path, sources: Sequence[Source]) -> None:
    """The merged folder must be new, empty or hold only the log of a merge refused before writing (so a
    retry works), and must be none of the inputs (nor inside one)."""
    out = Path(out)
    for source in sources:
        root = source.dir.resolve()
        target = out.resolve()
        if target == root or root in target.parents:
            raise UserError(
                f"merge: --out {out} is inside the input folder {source.dir}; choose another --out"
            )
    if out.exists() and (not out.is_dir() or not holds_only_logs(out)):
        raise UserError(f"merge: --out {out} exists and is not empty; choose a new folder")


def _copy_file(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    if src.suffix in _LINKABLE:
        try:
            os.link(src, dst)  # replaced atomically by any later write, so sharing the inode is safe
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)


def _copy_tree(src: Path, dst: Path) -> None:
    if not src.exists():
        return
    for path in sorted(src.rglob("*")):
        if path.is_file():
            _copy_file(path, dst / path.relative_to(src))


def copy_objectives(plan: MergePlan, out: Path) -> None:
    """Each held objective's pretraining folder, evaluation cells and feature cache, from its holder."""
    target = RunDir(out)
    for label in plan.hold:
        source = plan.holder[label].paths
        _copy_tree(source.pretrain(label), target.pretrain(label))
        _copy_tree(source.cells(label), target.cells(label))
        if source.features(label).exists():
            _copy_file(source.features(label), target.features(label))
