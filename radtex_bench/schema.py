"""Typed, validated, frozen configuration objects built from plain YAML data.

A small schema layer over dataclasses: each field's type hint drives validation and coercion, field
metadata carries ranges and help, and every error names the key path and suggests the closest key.
Used for the recipe and for the option blocks of dataset kinds.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

from .errors import ConfigError, did_you_mean

_MISSING = dataclasses.MISSING


def option(
    default: Any = _MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    help: str = "",
    default_factory: Any = _MISSING,
) -> Any:
    """A dataclass field with a range and a help text."""
    metadata = {"ge": ge, "gt": gt, "le": le, "help": help}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against type hint ``tp``; return it in canonical form (tuples for lists)."""
    origin = typing.get_origin(tp)
    if tp is Any:
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
        (item_tp,) = typing.get_args(tp)[:1] or (Any,)
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
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(where, f"expected an integer, got {_describe(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(where, f"expected a number, got {_describe(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # YAML turns `name: 2024` into an int; a name is still a string
        raise ConfigError(where, f"expected a string, got {_describe(value)}")
    raise TypeError(f"unsupported schema type {tp!r} at {where}")


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


def build(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(where, f"expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
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
