"""The base of experiment trackers: one interface, the registry, and the composite the run talks to.

A tracker mirrors what a run writes anyway (the run folder stays the record) into a tool researchers
watch: TensorBoard, Weights & Biases, MLflow. Each is a registry member with a ``Config`` dataclass
(its recipe section ``logging.<name>``), the pip extra that installs it, and five calls, made on rank 0
only:

* :meth:`Tracker.log_config` once, with the resolved recipe (plain data, as recipe.yaml holds it);
* :meth:`Tracker.log_metrics` at every logging step of pretraining (``train.log_every``), with the
  numbers the trainer writes to ``metrics.jsonl`` and the prefix ``pretrain/<label>``;
* :meth:`Tracker.log_summary` once at the end, with the rows of ``summary.csv``;
* :meth:`Tracker.log_artifacts` once at the end, with report.md, the CSV tables and the plots;
* :meth:`Tracker.close`.

Plug-ins register a tracker like an objective, from a module in the recipe's ``plugins:`` or the
``radtex_bench.trackers`` entry-point group::

    from radtex_bench.tracking import Tracker, register_tracker

    @register_tracker("my_tracker")
    class MyTracker(Tracker):
        extra = "my-tracker-package"          # what `pip install` needs (named in the error)
        requires = ("my_tracker_lib",)         # modules that must be importable
        def log_metrics(self, step, metrics, prefix=""): ...
"""

from __future__ import annotations

import importlib.util
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..errors import UserError
from ..registry import Registry

log = logging.getLogger("radtex_bench")


@dataclass(frozen=True)
class TrackedRun:
    """What every tracker is told about the run it records."""

    #: The run folder (``--out``); trackers write their local files under it unless told otherwise.
    run_dir: Path
    #: The recipe's ``name``: the experiment / project grouping of the runs of one recipe.
    recipe_name: str
    #: The objectives this invocation pretrains and scores (all of the recipe, or its ``--only`` labels).
    labels: tuple[str, ...]
    #: True when ``labels`` is a selection (``--only``): the run name then carries the labels.
    selection: bool = False

    @property
    def run_name(self) -> str:
        """``<recipe name>`` or, for an ``--only`` job, ``<recipe name>-<label>[+<label>...]``."""
        return f"{self.recipe_name}-{'+'.join(self.labels)}" if self.selection else self.recipe_name


@dataclass(frozen=True)
class NoSettings:
    """A tracker without settings: ``logging.<name>: true``."""


class Tracker:
    """One experiment tracker. Subclasses override the ``log_*`` calls they support; the base does nothing.

    Constructed with its validated ``Config`` and the :class:`TrackedRun`; may raise :class:`UserError`
    when it cannot start (the run then stops before any work).
    """

    #: Registry name, the key of the recipe section ``logging.<name>`` (set by :func:`register_tracker`).
    name: ClassVar[str] = ""
    #: The pip extra of radtex-bench that installs it (``pip install 'radtex-bench[<extra>]'``).
    extra: ClassVar[str] = ""
    #: Modules that must be importable for the tracker to work (checked before any work).
    requires: ClassVar[tuple[str, ...]] = ()
    #: The settings of ``logging.<name>``: a frozen dataclass built with :func:`radtex_bench.schema.option`.
    Config: ClassVar[type] = NoSettings

    def __init__(self, config: Any, run: TrackedRun):
        self.config = config
        self.run = run

    @classmethod
    def required(cls, config: Any) -> tuple[str, ...]:
        """The modules ``config`` needs (:attr:`requires` unless a setting adds some)."""
        return cls.requires

    @classmethod
    def check_installed(cls, config: Any = None) -> None:
        """Raise a one-line :class:`UserError` naming the extra when a required module is missing."""
        missing = [m for m in cls.required(config) if importlib.util.find_spec(m) is None]
        if missing:
            install = f"pip install 'radtex-bench[{cls.extra}]'" if cls.extra else f"pip install {missing[0]}"
            raise UserError(
                f"logging.{cls.name}: the {cls.name} tracker needs '{missing[0]}', which is not installed; "
                f"run {install}, or turn it off with logging.{cls.name}: false"
            )

    def log_config(self, recipe: Mapping[str, Any]) -> None:
        """The resolved recipe (plain data, every default filled in)."""

    def log_metrics(self, step: int, metrics: Mapping[str, Any], prefix: str = "") -> None:
        """One logging step: ``metrics`` as written to metrics.jsonl (:func:`scalars` keeps the numbers)."""

    def log_summary(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """The rows of summary.csv (strings, as read by :mod:`csv`; :func:`summary_points` parses them)."""

    def log_artifacts(self, paths: Sequence[Path]) -> None:
        """Files to attach to the tracked run: report.md, the CSV tables, the plots."""

    def close(self, success: bool = True) -> None:
        """Flush and end the tracked run; ``success`` False marks it failed where the tool can."""


TRACKERS: Registry[type[Tracker]] = Registry("tracker", Tracker)


def register_tracker(name: str):
    """Class decorator: register a :class:`Tracker` under ``name`` (its ``logging.<name>`` section)."""
    register = TRACKERS.register(name)

    def decorator(cls: type[Tracker]) -> type[Tracker]:
        cls.name = name
        return register(cls)

    return decorator


class Trackers(Tracker):
    """Every enabled tracker behind one :class:`Tracker`; with none it is a no-op.

    A tracker that fails while logging (a full disk, a library bug) must not end hours of training whose
    record is the run folder anyway: the error is logged once as a warning and that tracker is dropped.
    """

    def __init__(self, members: Sequence[Tracker] = ()):
        self.members = list(members)

    def __bool__(self) -> bool:
        return bool(self.members)

    def _each(self, call: str, *args: Any, **kwargs: Any) -> None:
        for tracker in list(self.members):
            try:
                getattr(tracker, call)(*args, **kwargs)
            except Exception as exc:
                log.warning(
                    "tracker %s failed in %s (%s: %s); it is turned off for the rest of the run",
                    tracker.name,
                    call,
                    type(exc).__name__,
                    exc,
                )
                self.members.remove(tracker)
                if call != "close":
                    try:
                        tracker.close(success=False)
                    except Exception:
                        pass

    def log_config(self, recipe: Mapping[str, Any]) -> None:
        self._each("log_config", recipe)

    def log_metrics(self, step: int, metrics: Mapping[str, Any], prefix: str = "") -> None:
        self._each("log_metrics", step, metrics, prefix)

    def log_summary(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self._each("log_summary", rows)

    def log_artifacts(self, paths: Sequence[Path]) -> None:
        self._each("log_artifacts", [Path(p) for p in paths if Path(p).is_file()])

    def close(self, success: bool = True) -> None:
        self._each("close", success)
        self.members = []


# -- helpers shared by the trackers --------------------------------------------------------------------

#: metrics.jsonl fields that are not metrics: the step is the x axis, time a wall-clock stamp.
NOT_METRICS = frozenset({"step", "time"})

#: summary.csv columns sent to the trackers (the others are spreads, counts and AUPRC intervals).
SUMMARY_METRICS = ("macro_auc", "ci_low", "ci_high", "macro_auprc")


def scalars(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of ``metrics`` (not ``step``/``time``), keys as ``<prefix>/<key>``."""
    out = {}
    for key, value in metrics.items():
        if key in NOT_METRICS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[f"{prefix}/{key}" if prefix else key] = float(value)
    return out


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def summary_points(rows: Sequence[Mapping[str, Any]]) -> dict[int, dict[str, float]]:
    """summary.csv rows -> ``{budget: {"eval/<protocol>/<objective>/<metric>": value}}``, budgets ascending.

    The budget is the x axis (step) of the evaluation curves, so a tracker draws macro AUROC against
    labels per objective; empty cells (undefined metrics) are left out, never sent as 0.
    """
    points: dict[int, dict[str, float]] = {}
    for row in rows:
        budget = int(float(row["budget"]))
        for metric in SUMMARY_METRICS:
            value = _number(row.get(metric))
            if value is not None:
                key = f"eval/{row['protocol']}/{row['objective']}/{metric}"
                points.setdefault(budget, {})[key] = value
    return dict(sorted(points.items()))


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """Plain nested data -> ``{"a.b.0.c": "value"}`` (strings; lists of scalars kept whole)."""
    if isinstance(tree, Mapping):
        out: dict[str, str] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(tree, (list, tuple)) and any(isinstance(v, (Mapping, list, tuple)) for v in tree):
        out = {}
        for i, value in enumerate(tree):
            out.update(flatten(value, f"{prefix}.{i}"))
        return out
    return {prefix: "null" if tree is None else str(list(tree) if isinstance(tree, tuple) else tree)}


def safe_key(key: str) -> str:
    """A metric or parameter name that every tracker accepts: letters, digits, ``_-./`` and spaces."""
    return re.sub(r"[^\w\-./ ]", "_", key)
