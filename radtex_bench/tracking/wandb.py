"""``logging.wandb``: Weights & Biases (``pip install 'radtex-bench[wandb]'``), **offline by default**.

``mode: offline`` (the default) writes the run under ``DIR/wandb/offline-run-*/`` (or ``logging.wandb.dir``,
else ``$WANDB_DIR`` when set) and contacts no server; upload it later from a machine with network access
with ``wandb sync DIR/wandb/offline-run-*``. Only ``mode: online``, written in the recipe, lets the
run talk to the W&B server (it then needs ``wandb login``); ``mode: disabled`` makes every call a no-op.

What is logged: the resolved recipe as the run's config; ``pretrain/<label>/<metric>`` at every logging
step against ``pretrain/<label>/step`` (each objective has its own step axis, so several objectives in
one run do not fight over W&B's single ``_step``); ``eval/<protocol>/<objective>/<metric>`` against
``eval/budget`` (macro AUROC against labels) and summary.csv as the table ``tables/summary``; the plots as
images and report.md, the CSV tables and the plots as one artifact of type ``run-report``. The run is
named after the recipe (plus the ``--only`` labels) and grouped by recipe name, so the jobs of one Slurm
array sit together.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import UserError
from ..schema import option
from .base import TrackedRun, Tracker, register_tracker, scalars, summary_points


@dataclass(frozen=True)
class WandbConfig:
    project: str = option("radtex-bench", help="W&B project")
    entity: str | None = option(None, help="W&B team or user; null = your default entity")
    mode: Literal["offline", "online", "disabled"] = option(
        "offline",
        help="offline (default: nothing leaves the machine) | online (needs wandb login) | disabled",
    )
    name: str | None = option(None, help="run name; null = the recipe name (+ the --only labels)")
    group: str | None = option(None, help="run group; null = the recipe name")
    tags: tuple[str, ...] = option((), help="run tags")
    dir: str | None = option(None, help="where the run files go; null = $WANDB_DIR, else DIR")


@register_tracker("wandb")
class WandbTracker(Tracker):
    extra = "wandb"
    requires = ("wandb",)
    Config = WandbConfig

    def __init__(self, config: WandbConfig, run: TrackedRun):
        super().__init__(config, run)
        import wandb

        self._wandb = wandb
        folder = Path(config.dir or os.environ.get("WANDB_DIR") or run.run_dir)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            self.wb = wandb.init(
                project=config.project,
                entity=config.entity,
                name=config.name or run.run_name,
                group=config.group or run.recipe_name,
                tags=list(config.tags),
                dir=str(folder),
                mode=config.mode,
                # Keep the terminal (rich progress bars) and the code to ourselves.
                settings=wandb.Settings(console="off", silent=True, save_code=False),
                reinit="create_new",
            )
        except Exception as exc:
            raise UserError(
                f"logging.wandb: W&B could not start ({type(exc).__name__}: {exc}); with mode: online run "
                "`wandb login` first, or use mode: offline"
            ) from None
        self._step_axes: set[str] = set()

    def _axis(self, prefix: str, step_key: str) -> None:
        if prefix not in self._step_axes:
            self.wb.define_metric(step_key)
            self.wb.define_metric(f"{prefix}/*", step_metric=step_key)
            self._step_axes.add(prefix)

    def log_config(self, recipe: Mapping[str, Any]) -> None:
        self.wb.config.update(dict(recipe), allow_val_change=True)

    def log_metrics(self, step: int, metrics: Mapping[str, Any], prefix: str = "") -> None:
        prefix = prefix or "train"
        self._axis(prefix, f"{prefix}/step")
        self.wb.log({**scalars(metrics, prefix), f"{prefix}/step": step})

    def log_summary(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self._axis("eval", "eval/budget")
        for budget, values in summary_points(rows).items():
            self.wb.log({**values, "eval/budget": budget})
        if rows:
            columns = list(rows[0])
            table = self._wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in rows])
            self.wb.log({"tables/summary": table})

    def log_artifacts(self, paths: Sequence[Path]) -> None:
        if not paths:
            return
        images = {f"plots/{p.stem}": self._wandb.Image(str(p)) for p in paths if p.suffix == ".png"}
        if images:
            self.wb.log(images)
        name = re.sub(r"[^\w\-.]", "-", f"{self.run.run_name}-report")
        artifact = self._wandb.Artifact(name, type="run-report")
        for path in paths:
            artifact.add_file(str(path), name=_relative(path, self.run.run_dir))
        self.wb.log_artifact(artifact)

    def close(self, success: bool = True) -> None:
        self.wb.finish(exit_code=0 if success else 1)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return path.name
