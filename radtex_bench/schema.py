"""Typed, validated, frozen configuration objects built from plain YAML data.

A small schema layer over dataclasses: each field's type hint drives validation and coercion, field
metadata carries ranges and help, and every error names the key path and suggests the closest key.
Used for the recipe, the option blocks of dataset kinds, protocol sections and objectives' ``params``
(whose ranges are written as ``Annotated[int, Range(ge=1)]`` in the ``__init__`` signature).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

from .errors import ConfigError, did_you_mean

_MISSING = dataclasses.MISSING


@dataclasses.dataclass(frozen=True)
class Range:
    """Bounds of a number (or of every number of a list): ``Annotated[float, Range(gt=0, le=1)]``."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def check(self, value: Any, where: str) -> None:
        _check_range(value, {"ge": self.ge, "gt": self.gt, "le": self.le, "lt": self.lt}, where)

    def describe(self) -> str:
        """``0 < x <= 1``-style text for docs and errors."""
        low = f"{self.ge} <= " if self.ge is not None else f"{self.gt} < " if self.gt is not None else ""
        high = f" <= {self.le}" if self.le is not None else f" < {self.lt}" if self.lt is not None else ""
        return f"{low}x{high}" if low or high else "any"


#: Common ranges, for objectives' and protocols' parameters.
PositiveInt = Annotated[int, Range(ge=1)]
NonNegativeInt = Annotated[int, Range(ge=0)]
PositiveFloat = Annotated[float, Range(gt=0.0)]
NonNegativeFloat = Annotated[float, Range(ge=0.0)]
Probability = Annotated[float, Range(ge=0.0, le=1.0)]
#: Dropout and label smoothing: 1 would zero everything.
Fraction = Annotated[float, Range(ge=0.0, lt=1.0)]


def type_hints(obj: Any) -> dict[str, Any]:
    """Type hints with ``Annotated`` metadata kept (ranges live there)."""
    return typing.get_type_hints(obj, include_extras=True)


def ranges_of(tp: Any) -> list[Range]:
    """The :class:`Range` metadata of a type hint (through ``X | None``), for docs."""
    if typing.get_origin(tp) is Annotated:
        return [m for m in tp.__metadata__ if isinstance(m, Range)]
    if typing.get_origin(tp) in (Union, types.UnionType):
        return [r for arg in typing.get_args(tp) for r in ranges_of(arg)]
    return []


def option(
    default: Any = _MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    help: str = "",
    default_factory: Any = _MISSING,
    internal: bool = False,
) -> Any:
    """A dataclass field with a range and a help text; ``internal`` fields are not recipe keys."""
    metadata = {"ge": ge, "gt": gt, "le": le, "lt": lt, "help": help, "internal": internal}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _type_name(typing.get_args(tp)[0])
    if tp is type(None):
        return "null"
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        if origin is tuple and len(args) > 1 and args[1] is not Ellipsis:
            return f"a list of {len(args)} {_plural(args[0])}"
        return f"a list of {_plural(args[0])}" if args else "a list"
    if origin is dict:
        return "mapping"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _plural(tp: Any) -> str:
    names = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}
    base = typing.get_args(tp)[0] if typing.get_origin(tp) is Annotated else tp
    return names.get(base, f"{_type_name(base)} values")


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against type hint ``tp``; return it in canonical form (tuples for lists)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Annotated:
        value = coerce(value, typing.get_args(tp)[0], where)
        for meta in tp.__metadata__:
            if isinstance(meta, Range):
                meta.check(value, where)
        return value
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(where, f"expected null, got {_describe(value)}")
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(where, f"expected {_type_name(tp)}, got {_describe(value)}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices and not isinstance(value, bool):
            return value
        hint = did_you_mean(str(value), [str(c) for c in choices]) if isinstance(value, str) else ""
        if not hint:
            hint = "; choose one of " + ", ".join(repr(c) for c in choices)
        raise ConfigError(where, f"invalid value {_describe(value)}{hint}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(where, f"expected {_type_name(tp)}, got {_describe(value)}")
        args = typing.get_args(tp)
        (item_tp,) = args[:1] or (Any,)
        if origin is tuple and len(args) > 1 and args[1] is not Ellipsis and len(value) != len(args):
            raise ConfigError(where, f"expected {_type_name(tp)}, got {len(value)}: {_describe(value)}")
        return tuple(coerce(v, item_tp, f"{where}.{i}") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(where, f"expected a mapping, got {_describe(value)}")
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(where, f"keys must be strings, got {_describe(k)}")
            out[k] = coerce(v, val_tp, f"{where}.{k}")
        return out
    if isinstance(tp, type) and hasattr(tp, "from_plain"):
        return tp.from_plain(value, where)  # types whose schema depends on the data (dataset kinds)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(where, f"expected true or false, got {_describe(value)}")
    if tp is int:
        if isinstance(value, str):
            value = _number(value, value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(where, f"expected an integer, got {_describe(value)}")
    if tp is float:
        if isinstance(value, str):
            value = _number(value, value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(where, f"expected a finite number, got {_describe(value)}")
            return float(value)
        raise ConfigError(where, f"expected a number, got {_describe(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # YAML turns `name: 2024` into an int; a name is still a string
        raise ConfigError(where, f"expected a string, got {_describe(value)}")
    raise TypeError(f"unsupported schema type {tp!r} at {where}")


#: A number YAML 1.1 reads as a string: ``3e-4`` and ``1E5`` (no dot), ``+2``, ``1_000``.
_NUMBER = re.compile(r"[-+]?(?:\d[\d_]*)?\.?\d*(?:[eE][-+]?\d+)?")


def _number(text: str, fallback: Any) -> Any:
    """``"3e-4"`` -> 0.0003: PyYAML follows YAML 1.1, where a float needs a dot, so the way most people
    write a learning rate arrives as a string. Anything else is returned unchanged (``fallback``)."""
    t = text.strip()
    if not t or not _NUMBER.fullmatch(t) or not any(c.isdigit() for c in t):
        return fallback
    try:
        number = float(t.replace("_", ""))
    except ValueError:
        return fallback
    if "." not in t and "e" not in t.lower():
        return int(t.replace("_", ""))
    return number


def _check_range(value: Any, meta: Mapping[str, Any], where: str) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float, tuple)):
        return
    values = value if isinstance(value, tuple) else (value,)
    for i, v in enumerate(values):
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        at = f"{where}.{i}" if isinstance(value, tuple) else where
        if meta.get("ge") is not None and v < meta["ge"]:
            raise ConfigError(at, f"must be >= {meta['ge']}, got {v}")
        if meta.get("gt") is not None and v <= meta["gt"]:
            raise ConfigError(at, f"must be > {meta['gt']}, got {v}")
        if meta.get("le") is not None and v > meta["le"]:
            raise ConfigError(at, f"must be <= {meta['le']}, got {v}")
        if meta.get("lt") is not None and v >= meta["lt"]:
            raise ConfigError(at, f"must be < {meta['lt']}, got {v}")


def build(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(where, f"expected a mapping, got {_describe(data)}")
    hints = type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("internal")}
    for key in data:
        if key not in fields:
            at = f"{where}.{key}" if where else str(key)
            raise ConfigError(at, f"unknown key{did_you_mean(str(key), fields)}")
    kwargs = {}
    for name, f in fields.items():
        at = f"{where}.{name}" if where else name
        if name in data:
            value = coerce(data[name], hints[name], at)
        elif f.default is not _MISSING:
            value = f.default
        elif f.default_factory is not _MISSING:
            value = f.default_factory()
        else:
            raise ConfigError(at, "required key is missing")
        _check_range(value, f.metadata, at)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if where and exc.where and not exc.where.startswith(where):
            raise ConfigError(f"{where}.{exc.where}", str(exc).split(": ", 1)[-1]) from None
        raise


def to_plain(obj: Any) -> Any:
    """Dataclasses, tuples and mappings as plain YAML/JSON-ready data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if hasattr(obj, "to_plain"):
            return obj.to_plain()
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj
