"""``logging.mlflow``: MLflow tracking (``pip install 'radtex-bench[mlflow]'``), through ``MlflowClient``.

``tracking_uri: null`` (the default) keeps everything in the run folder: a SQLite tracking store
``DIR/mlflow.db`` (MLflow's recommended local backend) and artefacts under ``DIR/mlartifacts/``; browse
it with ``mlflow ui --backend-store-uri sqlite:///DIR/mlflow.db``. Any other URI is used as given: a
``sqlite:///...`` database shared by many runs, an ``http(s)://`` tracking server (the only setting that
reaches the network), or a ``file:...`` folder store (MLflow 3 refuses those unless
``MLFLOW_ALLOW_FILE_STORE=true`` is set).

The run is created in the experiment ``logging.mlflow.experiment`` (null = the recipe name), named
after the recipe (plus the ``--only`` labels). Logged: the resolved recipe as params (flattened dotted
keys) and as the artefact ``recipe.yaml``; ``pretrain/<label>/<metric>`` at every logging step (step =
optimiser step); ``eval/<protocol>/<objective>/<metric>`` with step = label budget; report.md, the CSV
tables and the plots as artefacts. The client API is used, not ``mlflow.start_run``: no process-global
active run is left behind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..schema import option
from .base import TrackedRun, Tracker, flatten, register_tracker, safe_key, scalars, summary_points

#: MLflow's limits on one ``log_batch`` call and on a parameter's value.
_MAX_PARAMS, _MAX_METRICS, _MAX_VALUE = 100, 1000, 6000


@dataclass(frozen=True)
class MlflowConfig:
    tracking_uri: str | None = option(
        None, help="MLflow tracking URI; null = a SQLite store in the run folder (DIR/mlflow.db)"
    )
    experiment: str | None = option(None, help="experiment name; null = the recipe name")
    run_name: str | None = option(None, help="run name; null = the recipe name (+ the --only labels)")


@register_tracker("mlflow")
class MlflowTracker(Tracker):
    extra = "mlflow"
    requires = ("mlflow",)
    Config = MlflowConfig

    @classmethod
    def required(cls, config: MlflowConfig | None) -> tuple[str, ...]:
        # A SQLite store (the default) needs SQLAlchemy and Alembic, which mlflow-skinny leaves out.
        uri = config.tracking_uri if config is not None else None
        sqlite = uri is None or uri.startswith("sqlite:")
        return cls.requires + (("sqlalchemy", "alembic") if sqlite else ())

    def __init__(self, config: MlflowConfig, run: TrackedRun):
        super().__init__(config, run)
        from mlflow.tracking import MlflowClient

        # A new SQLite store announces its schema migrations at INFO level; the run log is ours.
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)

        root = Path(run.run_dir).resolve()
        uri = config.tracking_uri or f"sqlite:///{root / 'mlflow.db'}"
        experiment = config.experiment or run.recipe_name
        try:
            self.client = MlflowClient(tracking_uri=uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is not None:
                experiment_id = found.experiment_id
            else:
                # A local store keeps its artefacts beside it; a server decides for itself.
                location = (root / "mlartifacts").as_uri() if config.tracking_uri is None else None
                experiment_id = self.client.create_experiment(experiment, artifact_location=location)
            self.run_id = self.client.create_run(
                experiment_id, run_name=config.run_name or run.run_name
            ).info.run_id
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"logging.mlflow: cannot open the tracking store {uri} ({first}); fix "
                "logging.mlflow.tracking_uri or set it to null for a store in the run folder"
            ) from None

    def log_config(self, recipe: Mapping[str, Any]) -> None:
        import yaml
        from mlflow.entities import Param

        params = [Param(safe_key(k)[:250], v[:_MAX_VALUE]) for k, v in sorted(flatten(dict(recipe)).items())]
        for i in range(0, len(params), _MAX_PARAMS):
            self.client.log_batch(self.run_id, params=params[i : i + _MAX_PARAMS])
        text = yaml.safe_dump(dict(recipe), sort_keys=False, default_flow_style=None, width=100)
        self.client.log_text(self.run_id, text, "recipe.yaml")

    def _metrics(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(safe_key(k), v, now, step) for k, v in values.items()]
        for i in range(0, len(metrics), _MAX_METRICS):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + _MAX_METRICS])

    def log_metrics(self, step: int, metrics: Mapping[str, Any], prefix: str = "") -> None:
        self._metrics(scalars(metrics, prefix), step)

    def log_summary(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for budget, values in summary_points(rows).items():
            self._metrics(values, budget)

    def log_artifacts(self, paths: Sequence[Path]) -> None:
        root = Path(self.run.run_dir).resolve()
        for path in paths:
            parent = path.resolve().parent
            folder = parent.relative_to(root).as_posix() if parent.is_relative_to(root) else None
            self.client.log_artifact(self.run_id, str(path), artifact_path=folder if folder != "." else None)

    def close(self, success: bool = True) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if success else "FAILED")
