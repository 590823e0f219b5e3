"""A recipe's dataset block: ``{kind: ..., <the kind's options>}`` validated against the kind's options."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError
from ...schema import build, to_plain
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
