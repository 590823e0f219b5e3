"""A recipe's dataset block: ``{kind: ..., <the kind's options>}`` validated against the kind's options."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError, DataError
from ...schema import build, to_plain
from ..columns import normalise_views
from ..splits import normalise_split
from ..table import ImageTable
from .base import DATASETS, DatasetKind


@dataclass(frozen=True)
class DatasetSpec:
    """A recipe's dataset block: ``{kind: ..., <the kind's options>}``."""

    kind: str
    options: Any

    @classmethod
    def from_plain(cls, value: Any, where: str) -> DatasetSpec:
        if isinstance(value, DatasetSpec):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(where, f"expected a mapping with a `kind` key, got {value!r}")
        if "kind" not in value:
            raise ConfigError(f"{where}.kind", f"required; one of {', '.join(DATASETS.names())}")
        kind = value["kind"]
        if not isinstance(kind, str):
            raise ConfigError(f"{where}.kind", f"expected a string, got {kind!r}")
        try:
            kind_cls = DATASETS.get(kind)
        except Exception as exc:
            raise ConfigError(f"{where}.kind", str(exc)) from None
        rest = {k: v for k, v in value.items() if k != "kind"}
        return cls(kind=kind, options=build(kind_cls.Options, rest, where))

    def to_plain(self) -> dict[str, Any]:
        return {"kind": self.kind, **to_plain(self.options)}

    def replace(self, **changes: Any) -> DatasetSpec:
        return DatasetSpec(self.kind, dataclasses.replace(self.options, **changes))

    def reader(self, where: str = "data") -> DatasetKind:
        return DATASETS.get(self.kind)(self.options, where)

    def source(self, where: str = "data") -> str:
        """How errors name this block: ``data.pretrain (manifest at /data/x)``."""
        return f"{where} ({self.kind} at {getattr(self.options, 'root', None) or 'the built-in generator'})"

    def read(self, where: str = "data") -> ImageTable:
        """The kind's table of every listed image, checked by :func:`check_table`: what runs, ``data
        summary``, ``prepare`` and ``bench`` all read."""
        table = self.reader(where).read()
        check_table(table, self.source(where))
        return table


def check_table(table: ImageTable, source: str) -> None:
    """What every kind must give, checked (and spellings made canonical) for every reader's table, a
    plug-in's too: unique image ids, a patient for every image, split names and view names in their
    canonical spelling (``val`` -> ``validate``, ``pa`` / ``AP SUPINE`` -> ``PA`` / ``AP``). The built-in
    kinds already give that."""
    frame = table.frame
    duplicated = frame["image_id"].duplicated()
    if duplicated.any():
        raise DataError(
            f"{source}: image_id {frame['image_id'][duplicated].iloc[0]!r} is listed more than once; "
            "every image needs its own id (a dataset kind lists each image once)"
        )
    blank = frame["patient_id"].str.strip() == ""
    if blank.any():
        raise DataError(
            f"{source}: {int(blank.sum())} image(s) have no patient_id (e.g. {frame['image_id'][blank].iloc[0]!r}); "
            "splits and intervals are by patient, so every image needs one"
        )
    mapping = {}
    for value in frame["split"].unique():
        try:
            mapping[value] = normalise_split(value)
        except ValueError:
            raise DataError(
                f"{source}: unknown split {value!r}; use train, validate, test or blank"
            ) from None
    frame["split"] = frame["split"].map(mapping)
    frame["view"] = normalise_views(frame["view"]).to_numpy()
