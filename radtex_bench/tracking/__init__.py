"""Experiment trackers (recipe section ``logging:``): the base, one module per tracker, the registry.

Each tracker is an optional extra, off by default; its library is imported only when it is switched
on. :func:`check_trackers` runs before any work (a tracker asked for but not installed is a one-line
error naming the extra); :func:`open_trackers` gives the run one :class:`Tracker` (a no-op when none is
enabled, and on every rank but 0 under torchrun).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..registry import load_entry_points
from .base import TRACKERS, TrackedRun, Tracker, Trackers, register_tracker

# Built-ins register themselves on import; their libraries are imported only when one is opened.
from . import mlflow, tensorboard, wandb  # noqa: E402,F401  isort: skip

ENTRY_POINT_GROUP = "radtex_bench.trackers"


def load_tracker_entry_points() -> None:
    """Trackers declared by installed packages (plug-ins listed in a recipe register on import)."""
    load_entry_points(ENTRY_POINT_GROUP, TRACKERS)


def check_trackers(enabled: Mapping[str, Any]) -> None:
    """Raise a :class:`~radtex_bench.errors.UserError` naming the extra of the first enabled tracker
    whose library is not installed (``enabled``: tracker name -> its settings)."""
    for name, config in enabled.items():
        TRACKERS.get(name, where="logging").check_installed(config)


def open_trackers(enabled: Mapping[str, Any], run: TrackedRun, is_main: bool = True) -> Trackers:
    """Start every enabled tracker (``enabled``: name -> settings) for ``run``; only the main process
    logs, so on other ranks (and with nothing enabled) the result is a no-op :class:`Trackers`."""
    if not is_main:
        return Trackers()
    members: list[Tracker] = []
    try:
        for name, config in enabled.items():
            members.append(TRACKERS.get(name, where="logging")(config, run))
    except BaseException:
        Trackers(members).close(success=False)
        raise
    return Trackers(members)


__all__ = [
    "TRACKERS",
    "TrackedRun",
    "Tracker",
    "Trackers",
    "check_trackers",
    "load_tracker_entry_points",
    "open_trackers",
    "register_tracker",
]
