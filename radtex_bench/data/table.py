"""The one in-memory form every dataset kind produces: an :class:`ImageTable`.

One row per image. Labels are per image (an image inherits its study's labels) and keep the four
states of :mod:`radtex_bench.data.labels` until a recipe's uncertain policy maps them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .labels import apply_uncertain_policy

#: Columns of :attr:`ImageTable.frame`, in this order.
COLUMNS = ("image_id", "path", "patient_id", "study_id", "view", "split", "report")

#: Canonical split names. Datasets that ship another spelling map to these.
SPLITS = ("train", "validate", "test")


@dataclass
class ImageTable:
    """Images of one dataset.

    ``frame`` has the :data:`COLUMNS` (all strings; ``path`` absolute; ``split`` one of
    :data:`SPLITS` or ``""`` when the dataset has no official split; ``report`` ``""`` when absent;
    ``view`` upper-case such as ``PA``, ``AP``, ``LATERAL`` or ``""`` when unknown).
    ``labels`` is float32 ``[N, len(label_names)]`` holding 1 / 0 / -1 / NaN.
    ``pretrain_labels``: the labels pretraining objectives train on when a kind makes them differ from
    ``labels`` (the ``synthetic`` kind's label noise, docs/synthetic.md), same shape and states; None =
    ``labels``. Evaluation always reads ``labels``.
    """

    frame: pd.DataFrame
    labels: np.ndarray
    label_names: list[str]
    kind: str = ""
    root: Path | None = None
    #: Images that were listed but could not be used, as (image path, reason).
    skipped: list[tuple[str, str]] = field(default_factory=list)
    pretrain_labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        missing = [c for c in COLUMNS if c not in self.frame.columns]
        if missing:
            raise ValueError(f"ImageTable frame lacks columns {missing}")
        self.frame = self.frame.loc[:, list(COLUMNS)].reset_index(drop=True)
        for column in COLUMNS:
            self.frame[column] = self.frame[column].fillna("").astype(str)
        self.labels = np.asarray(self.labels, dtype=np.float32).reshape(
            len(self.frame), len(self.label_names)
        )
        if self.pretrain_labels is not None:
            self.pretrain_labels = np.asarray(self.pretrain_labels, dtype=np.float32).reshape(
                self.labels.shape
            )

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def image_ids(self) -> list[str]:
        return self.frame["image_id"].tolist()

    @property
    def patient_ids(self) -> np.ndarray:
        return self.frame["patient_id"].to_numpy()

    def take(self, rows: Sequence[int] | np.ndarray) -> ImageTable:
        """A new table holding ``rows`` (positions or a boolean mask), in that order."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return ImageTable(
            frame=self.frame.iloc[rows].reset_index(drop=True),
            labels=self.labels[rows],
            label_names=list(self.label_names),
            kind=self.kind,
            root=self.root,
            skipped=list(self.skipped),
            pretrain_labels=None if self.pretrain_labels is None else self.pretrain_labels[rows],
        )

    def split_rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.frame["split"].to_numpy() == split)

    def has_label(self, name: str) -> bool:
        return name in self.label_names

    def label_matrix(self, pathologies: Sequence[str], policy: str, pretraining: bool = False) -> np.ndarray:
        """``[N, P]`` float32 labels for ``pathologies`` after the uncertain policy (NaN = missing);
        ``pretraining``: the :attr:`pretrain_labels` when the table has them."""
        source = self.pretrain_labels if pretraining and self.pretrain_labels is not None else self.labels
        columns = []
        for name in pathologies:
            if name in self.label_names:
                columns.append(source[:, self.label_names.index(name)])
            else:
                columns.append(np.full(len(self), np.nan, dtype=np.float32))
        matrix = np.stack(columns, axis=1) if columns else np.zeros((len(self), 0), np.float32)
        return apply_uncertain_policy(matrix, policy)
