"""``logging.tensorboard``: TensorBoard event files (``pip install 'radtex-bench[tensorboard]'``).

Written with PyTorch's ``torch.utils.tensorboard.SummaryWriter`` into ``DIR/tensorboard/`` (or
``logging.tensorboard.dir``); view them with ``tensorboard --logdir DIR/tensorboard``. Scalars:

* ``pretrain/<label>/<metric>`` at every logging step (``loss``, the objective's parts, ``lr``,
  ``grad_norm``, ``images_per_s``, ...), x axis = optimiser step;
* ``eval/<protocol>/<objective>/<metric>`` (``macro_auc``, ``ci_low``, ``ci_high``, ``macro_auprc``),
  x axis = label budget, so each is a curve of the metric against labels.

The resolved recipe is a text entry (``recipe``, as YAML), report.md another (``report``), each plot
an image (``plots/<name>``). Nothing leaves the machine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..schema import option
from .base import TrackedRun, Tracker, register_tracker, scalars, summary_points


@dataclass(frozen=True)
class TensorBoardConfig:
    dir: str | None = option(None, help="folder of the event files; null = DIR/tensorboard")


@register_tracker("tensorboard")
class TensorBoardTracker(Tracker):
    extra = "tensorboard"
    requires = ("tensorboard",)
    Config = TensorBoardConfig

    def __init__(self, config: TensorBoardConfig, run: TrackedRun):
        super().__init__(config, run)
        from torch.utils.tensorboard import SummaryWriter

        self.dir = Path(config.dir) if config.dir else run.run_dir / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.dir))

    def log_config(self, recipe: Mapping[str, Any]) -> None:
        import yaml

        text = yaml.safe_dump(dict(recipe), sort_keys=False, default_flow_style=None, width=100)
        # TensorBoard renders text entries as markdown: four spaces make it a code block.
        self.writer.add_text("recipe", "".join(f"    {line}\n" for line in text.splitlines()))

    def log_metrics(self, step: int, metrics: Mapping[str, Any], prefix: str = "") -> None:
        for key, value in scalars(metrics, prefix).items():
            self.writer.add_scalar(key, value, global_step=step)

    def log_summary(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for budget, values in summary_points(rows).items():
            for key, value in values.items():
                self.writer.add_scalar(key, value, global_step=budget)
        self.writer.flush()

    def log_artifacts(self, paths: Sequence[Path]) -> None:
        import numpy as np
        from PIL import Image

        for path in paths:
            if path.suffix == ".png":
                with Image.open(path) as image:
                    pixels = np.asarray(image.convert("RGB"))  # [H, W, 3] uint8
                self.writer.add_image(f"plots/{path.stem}", pixels, dataformats="HWC")
            elif path.suffix == ".md":
                self.writer.add_text(path.stem, path.read_text(encoding="utf-8"))
        self.writer.flush()

    def close(self, success: bool = True) -> None:
        self.writer.close()
