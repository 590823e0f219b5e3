"""The run folder (SPEC §4): every path in it, what may change when a run is resumed, its stored recipe.

Everything that reads or writes a run folder takes its paths from :class:`RunDir`, so the layout is
defined once::

    DIR/recipe.yaml  run.log  splits.json  subsets.json  results.csv  summary.csv  comparisons.csv
    DIR/efficiency.csv  aubc.csv  aubc_comparisons.csv
    DIR/report.md  plots/*.png  skipped_images.txt
    DIR/retrieval.csv  retrieval_chance.csv  generation.csv  generations.csv   text-side protocols
    DIR/text_comparisons.csv                     their paired differences between objectives
    DIR/protocol_skips.csv                       protocols that could not score an objective, and why
    DIR/pretrain/images.csv                      the images pretraining used (image_id,path)
    DIR/pretrain/overlap.json                    evaluation images left out of pretraining, if any
    DIR/pretrain/<label>/encoder.safetensors     heads.safetensors  last.ckpt  metrics.jsonl
    DIR/features/<label>.npz                     cached pooled features of the evaluation images
    DIR/eval/<label>/<protocol>/b<budget>_s<seed>.npz   finished evaluation cells
    DIR/objectives.json                          the labels the folder holds, when not all of the recipe's

**Which objectives a folder holds.** ``recipe.yaml`` always keeps the *whole* recipe (every objective,
in order, with its settings), so a folder made by ``run --only`` knows the comparison it is part of
and ``merge`` can rebuild it. A folder that holds only some of those objectives says which in
``objectives.json``, a JSON list of labels in the recipe's order; a folder without that file holds
every objective of its recipe.yaml (a plain run). :meth:`RunDir.plan` decides, before any work, what a
start trains and what the folder then holds:

* a new folder holds the ``--only`` labels, or the whole recipe;
* ``--resume`` without ``--only`` continues what the folder holds (its selection, or the whole recipe,
  including objectives added to the recipe since);
* ``--resume --only L`` trains only ``L`` and *adds* it: the folder then holds what it held and ``L``,
  and its tables cover all of them. A folder never shrinks, so nothing it finished is lost.

Resuming as another subset cannot mix incompatible results, which is why it is allowed: the sections
that fix the splits, subsets and initial weights (:data:`FROZEN_ON_RESUME`) must be unchanged, every
objective the folder has started must keep its settings (both checked by :meth:`RunDir.check`), and
every held objective is re-scored under the current evaluation settings (cells are keyed by them). What
is refused is a start whose tables could not be written: an objective the folder holds but whose
pretraining has not finished, and that this start does not train.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import UserError

if TYPE_CHECKING:
    from .config import Recipe

#: Recipe sections that must not change when a run is resumed (evaluation settings may: cells are keyed
#: by their settings and recomputed when those change).
FROZEN_ON_RESUME = ("seed", "data", "encoder", "plugins")

ENCODER_FILE = "encoder.safetensors"
HELD_FILE = "objectives.json"
HEADS_FILE = "heads.safetensors"
CHECKPOINT_FILE = "last.ckpt"
METRICS_FILE = "metrics.jsonl"
#: Written by text objectives (:func:`radtex_bench.text.tokenizer.shared_tokenizer`) beside their heads.
TOKENIZER_FILE = "tokenizer.json"
#: The evaluation files two run folders must share to be merged (the same splits and labelled subsets).
PAIRED_FILES = ("splits.json", "subsets.json")


@dataclass(frozen=True)
class ObjectivePlan:
    """What one start of ``run`` does with the recipe's objectives (labels in the recipe's order)."""

    #: Objectives pretrained (or resumed) by this start.
    train: tuple[str, ...]
    #: Objectives the folder holds afterwards: scored and written to its tables.
    hold: tuple[str, ...]
    #: True when ``hold`` is not the whole recipe (``objectives.json`` records it).
    selection: bool


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # -- files of SPEC §4 ------------------------------------------------------------------------------

    @property
    def recipe(self) -> Path:
        return self.root / "recipe.yaml"

    @property
    def log(self) -> Path:
        return self.root / "run.log"

    def rank_log(self, rank: int) -> Path:
        return self.log if rank == 0 else self.root / f"run.rank{rank}.log"

    @property
    def splits(self) -> Path:
        return self.root / PAIRED_FILES[0]

    @property
    def subsets(self) -> Path:
        return self.root / PAIRED_FILES[1]

    @property
    def results(self) -> Path:
        return self.root / "results.csv"

    @property
    def summary(self) -> Path:
        return self.root / "summary.csv"

    @property
    def comparisons(self) -> Path:
        return self.root / "comparisons.csv"

    @property
    def efficiency(self) -> Path:
        """Labels-to-match of every ordered pair of objectives (SPEC §4)."""
        return self.root / "efficiency.csv"

    @property
    def aubc(self) -> Path:
        """Area under the budget curve per objective and protocol."""
        return self.root / "aubc.csv"

    @property
    def aubc_comparisons(self) -> Path:
        return self.root / "aubc_comparisons.csv"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def skipped_images(self) -> Path:
        return self.root / "skipped_images.txt"

    @property
    def retrieval(self) -> Path:
        """``objective,direction,metric,value,ci_low,ci_high`` of the ``retrieval`` protocol."""
        return self.root / "retrieval.csv"

    @property
    def retrieval_chance(self) -> Path:
        """``direction,metric,value``: the Recall@K a random ranking would get on the same pools."""
        return self.root / "retrieval_chance.csv"

    @property
    def generation(self) -> Path:
        """``objective,metric,value,ci_low,ci_high`` of the ``generation`` protocol."""
        return self.root / "generation.csv"

    @property
    def generations(self) -> Path:
        """``objective,image_id,reference,generated``: every generated report."""
        return self.root / "generations.csv"

    @property
    def text_comparisons(self) -> Path:
        """Paired differences of the retrieval and generation metrics between objectives (Holm within a
        protocol): ``protocol,direction,metric,objective_a,objective_b,diff,ci_low,ci_high,p_value,n_boot,
        p_holm``."""
        return self.root / "text_comparisons.csv"

    @property
    def protocol_skips(self) -> Path:
        """``objective,protocol,reason``: protocols that could not score an objective (report.md lists them)."""
        return self.root / "protocol_skips.csv"

    @property
    def caveats(self) -> Path:
        """Sentences report.md must show: things the data did not allow (e.g. a validation split without
        a class of a pathology). Written only when there are some."""
        return self.root / "caveats.json"

    @property
    def held(self) -> Path:
        """``objectives.json``: the labels the folder holds, written only when they are not the whole recipe."""
        return self.root / HELD_FILE

    @property
    def pretrain_images(self) -> Path:
        return self.root / "pretrain" / "images.csv"

    @property
    def overlap(self) -> Path:
        """Written when evaluation images were found in (and left out of) pretraining."""
        return self.root / "pretrain" / "overlap.json"

    def pretrain(self, label: str) -> Path:
        """``DIR/pretrain/<label>/``: one objective's training artefacts."""
        return self.root / "pretrain" / label

    def encoder(self, label: str) -> Path:
        return self.pretrain(label) / ENCODER_FILE

    def heads(self, label: str) -> Path:
        return self.pretrain(label) / HEADS_FILE

    # -- caches ----------------------------------------------------------------------------------------

    def features(self, label: str) -> Path:
        return self.root / "features" / f"{label}.npz"

    def cells(self, label: str) -> Path:
        """``DIR/eval/<label>/``: every evaluation cell of one objective."""
        return self.root / "eval" / label

    def cell(self, label: str, protocol: str, budget: int, seed: int) -> Path:
        return self.cells(label) / protocol / f"b{budget}_s{seed}.npz"

    # -- the stored recipe -----------------------------------------------------------------------------

    def stored_recipe(self) -> dict[str, Any] | None:
        """The run's resolved recipe as plain data, or None when the folder holds none."""
        if not self.recipe.exists():
            return None
        try:
            stored = yaml.safe_load(self.recipe.read_text(encoding="utf-8"))
        except Exception as exc:
            raise UserError(f"{self.recipe} is unreadable ({exc}); choose another --out") from None
        return stored if isinstance(stored, dict) else {}

    def held_labels(self) -> list[str] | None:
        """The labels of ``objectives.json``, or None when the folder holds its whole recipe."""
        if not self.held.exists():
            return None
        try:
            labels = json.loads(self.held.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.held} is unreadable ({exc}); choose another --out") from None
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise UserError(f"{self.held} must be a JSON list of objective labels; choose another --out")
        return labels

    def holds(self, stored: dict[str, Any] | None = None) -> list[str]:
        """The labels this folder holds: ``objectives.json``, else every objective of its recipe.yaml."""
        held = self.held_labels()
        if held is not None:
            return held
        stored = self.stored_recipe() if stored is None else stored
        return recipe_labels(stored or {})

    def plan(self, recipe: Recipe, only: tuple[str, ...] = (), resume: bool = False) -> ObjectivePlan:
        """What a start with ``--only`` labels ``only`` trains and what the folder then holds (module
        docstring); reads the folder, writes nothing. Call after :meth:`check`.

        Raises:
            UserError: the folder holds an objective whose pretraining has not finished and that this
                start would not train, or holds none of the recipe's objectives any more.
        """
        labels = [spec.label for spec in recipe.objectives]
        stored = self.stored_recipe() if resume else None
        if stored is None:
            return fresh_plan(recipe, only)
        held = self.held_labels()
        if not only:  # continue: a selection stays one, a whole-recipe folder follows the recipe
            train = labels if held is None else [x for x in labels if x in held]
            hold = train
        else:  # add the --only labels to what the folder holds
            before = set(recipe_labels(stored) if held is None else held)
            train = [x for x in labels if x in only]
            hold = [x for x in labels if x in before or x in only]
        if not hold:
            raise UserError(
                f"{self.root} holds {', '.join(held or [])}, which the recipe no longer lists; resume it with "
                "its own recipe.yaml, or choose another --out"
            )
        for label in hold:
            if label not in train and not self.encoder(label).exists():
                raise UserError(
                    f"{self.root} holds objective '{label}', whose pretraining has not finished; resume it as "
                    f"well (--only {label}), or resume without --only to continue everything the folder holds"
                )
        return ObjectivePlan(tuple(train), tuple(hold), hold != labels)

    def objective_order(self, seen: list[str]) -> list[str]:
        """``seen`` labels in the recipe's order (unknown ones last), for tables and plots."""
        try:
            stored = self.stored_recipe() or {}
        except UserError:
            stored = {}
        order = [o.get("label") or o.get("name") for o in stored.get("objectives", []) if isinstance(o, dict)]
        return [o for o in order if o in seen] + [o for o in seen if o not in order]

    def check(self, recipe: Recipe, resume: bool) -> None:
        """Refuse to mix two different recipes' results in one folder (before any work)."""
        out = self.root
        if not out.exists():
            return
        if not out.is_dir():
            raise UserError(f"--out {out} is a file; choose a folder")
        stored = self.stored_recipe()
        if stored is None:
            if not holds_only_logs(out):
                raise UserError(
                    f"--out {out} is not empty and holds no radtex-bench run; choose a new or empty folder"
                )
            return
        if not resume:
            raise UserError(
                f"{out} already holds a run; pass --resume to continue it, or choose another --out"
            )
        new = recipe.to_plain()
        stored = _with_current_defaults(stored)
        for key in FROZEN_ON_RESUME:
            diff = first_difference(stored.get(key), new.get(key), key)
            if diff:
                raise UserError(
                    f"{out} holds a run of a different recipe ({diff} differs from {self.recipe}); resume it "
                    "with the same recipe, or choose another --out"
                )
        old = {o.get("label"): o for o in stored.get("objectives", [])}
        for i, spec in enumerate(new["objectives"]):
            # Only objectives this folder has started: an --only folder's recipe lists others too.
            if spec["label"] in old and self.pretrain(spec["label"]).exists():
                diff = first_difference(old[spec["label"]], spec, f"objectives.{i}")
                if diff:
                    raise UserError(
                        f"{out}: objective '{spec['label']}' was trained with other settings ({diff} differs); "
                        "give it a new label or choose another --out"
                    )


def holds_only_logs(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but the logs of a start that stopped before writing results: such a
    folder is reused by the next ``run`` or ``merge`` into it (a mistake found up front must not block the
    retry)."""
    return all(p.name.startswith("run.") and p.name.endswith(".log") for p in folder.iterdir())


def _with_current_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored recipe with this version's defaults filled in, so a folder written before a key was
    added (with its default) still resumes; the stored form itself when it no longer validates."""
    from .config import recipe_from_dict

    try:
        return recipe_from_dict(stored).to_plain()
    except UserError:
        return stored


def fresh_plan(recipe: Recipe, only: tuple[str, ...] = ()) -> ObjectivePlan:
    """A new folder: it trains and holds the ``--only`` labels, or the whole recipe."""
    labels = [spec.label for spec in recipe.objectives]
    train = [x for x in labels if x in only] if only else labels
    return ObjectivePlan(tuple(train), tuple(train), train != labels)


def recipe_labels(stored: dict[str, Any]) -> list[str]:
    """The objective labels of a stored (plain) recipe, in its order."""
    return [
        str(o.get("label") or o.get("name")) for o in stored.get("objectives") or [] if isinstance(o, dict)
    ]


def first_difference(a: object, b: object, path: str = "") -> str | None:
    """The dotted path of the first place where two plain-data trees differ, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            diff = first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            if diff:
                return diff
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            diff = first_difference(x, y, f"{path}.{i}")
            if diff:
                return diff
        return None
    return None if a == b else (path or "<root>")
