"""The base of dataset kinds: :class:`DatasetKind`, the options every kind shares, and the registry.

A kind reads one dataset in the layout it ships in and returns an :class:`ImageTable` holding every
listed image (all views, the official split when there is one). What every kind then needs (view
filter, patient-level splits, report sections, missing-image policy) happens once, in
:func:`radtex_bench.data.loading.load_table`. A recipe's dataset block is a
:class:`radtex_bench.data.kinds.DatasetSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from ...errors import ConfigError
from ...registry import Registry
from ...schema import option
from ..table import ImageTable

ReportSection = Literal["findings", "impression", "both", "full"]


@dataclass(frozen=True)
class DatasetOptions:
    """Keys every dataset block accepts (besides ``kind``)."""

    root: str | None = option(None, help="dataset folder (or the CSV file for `manifest`)")
    views: tuple[str, ...] | None = option(("PA", "AP"), help="views to keep; null keeps every view")
    cache: str | None = option(None, help="a `radtex-bench prepare` output folder to read pixels from")
    report_section: ReportSection = option("both", help="findings | impression | both | full")
    drop_prior: bool = option(False, help="drop sentences that refer to prior studies")
    split_seed: int = option(0, ge=0, help="seed of the patient-level split when no official split exists")
    split_fractions: tuple[float, ...] = option(
        (0.7, 0.1, 0.2), ge=0.0, help="train / validate / test fractions of patients when no official split"
    )
    allow_absolute_paths: bool = option(False, help="let image paths point outside the dataset root")

    def __post_init__(self) -> None:
        if len(self.split_fractions) != 3 or abs(sum(self.split_fractions) - 1.0) > 1e-6:
            raise ConfigError(
                "split_fractions", "must be three fractions (train, validate, test) summing to 1"
            )
        if self.split_fractions[0] <= 0 or self.split_fractions[2] <= 0:
            raise ConfigError("split_fractions", "train and test fractions must be > 0")
        if self.views is not None:
            object.__setattr__(self, "views", tuple(v.upper() for v in self.views))

    def root_path(self, where: str) -> Path:
        if not self.root:
            raise ConfigError(f"{where}.root", "required for this dataset kind: set it to the dataset folder")
        return Path(self.root).expanduser()


class DatasetKind:
    """Base class of dataset readers. Subclasses set ``name``, ``Options`` and implement ``read``."""

    name: ClassVar[str] = ""
    Options: ClassVar[type] = DatasetOptions
    #: One line for `radtex-bench list datasets`.
    description: ClassVar[str] = ""

    def __init__(self, options: Any, where: str = "data"):
        self.options = options
        self.where = where

    def read(self) -> ImageTable:
        """Every listed image with labels, views, official split and raw report text."""
        raise NotImplementedError


DATASETS: Registry[type[DatasetKind]] = Registry("dataset kind", base=DatasetKind)


def register_dataset(name: str):
    def decorator(cls: type[DatasetKind]) -> type[DatasetKind]:
        cls.name = name
        return DATASETS.register(name)(cls)

    return decorator
