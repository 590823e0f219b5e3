"""Typed, validated, frozen configuration objects built from plain YAML data.

A small schema layer over dataclasses: each field's type hint drives validation and coercion, field
metadata carries ranges and help, and every error names the key path and suggests the closest key.
Used for the recipe, the option blocks of dataset kinds, protocol sections and objectives' ``params``
(whose ranges are written as ``Annotated[int, Range(ge=1)]`` in the ``__init__`` signature).
:func:`range_text` writes a field's or a hint's valid values the one way the docs tables show them
(``tests/test_docs_ranges.py`` holds docs/recipes.md, docs/datasets.md and docs/objectives.md to it).
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
        """The bounds as docs and errors write them (``> 0``, ``(0, 1]``): :func:`range_text` of a number."""
        return range_text(Annotated[float, self])


#: Common ranges, for objectives' and protocols' parameters.
PositiveInt = Annotated[int, Range(ge=1)]
NonNegativeInt = Annotated[int, Range(ge=0)]
PositiveFloat = Annotated[float, Range(gt=0.0)]
NonNegativeFloat = Annotated[float, Range(ge=0.0)]
Probability = Annotated[float, Range(ge=0.0, le=1.0)]
#: Dropout and label smoothing: 1 would zero everything.
Fraction = Annotated[float, Range(ge=0.0, lt=1.0)]
#: A softmax temperature that divides cosine similarities: below 1e-3 the logits leave float range in
#: bf16 and lightly's losses refuse values under 1e-8 only once training starts.
Temperature = Annotated[float, Range(ge=1e-3, le=100.0)]


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


def range_text(tp: Any, name: str | None = None) -> str:
    """The valid values of type hint ``tp`` (or of field ``name`` of dataclass ``tp``), written the one
    way the docs tables show them (and :meth:`Range.describe`, for messages).

    A field's bounds are its ``option(ge=, gt=, le=, lt=)`` metadata; a hint's are its
    ``Annotated[..., Range(...)]`` metadata (through ``X | None`` and lists). The forms:

    * a number with one bound: ``≥ 1``, ``> 0``, ``≤ 10``, ``< 1``; with none: ``any``;
    * an integer with two bounds: ``3–4096`` (``gt``/``lt`` become the next integer inside), thousands
      separated from 10,000 on (``1–1,000,000``);
    * a real number with two bounds, interval notation: ``[0, 1]``, ``(0, 1]``, ``[0, 1)``, ``(0, 10]``;
    * ``true/false``; the choices of a ``Literal``: ``linear | mlp``; ``text``; ``mapping`` (a mapping,
      a nested section or a class with ``from_plain``; a class may describe itself in ``RANGE_TEXT``);
    * a list: ``list of numbers ≥ 0``, ``pair of numbers in (0, 1]``, ``list of text``;
    * alternatives joined by `` or ``, null last: ``≥ 1 or null``, ``[0, 0.5] or mapping``.

    Rules between parameters (``heads`` divides ``width``) live in ``check_params`` and are not shown.
    """
    if name is not None:
        if not dataclasses.is_dataclass(tp):
            raise TypeError(f"range_text({tp!r}, {name!r}): {tp!r} is not a dataclass")
        fields = {f.name: f for f in dataclasses.fields(tp)}
        if name not in fields:
            raise KeyError(f"{tp.__name__} has no field {name!r}")
        meta = fields[name].metadata
        bounds = Range(**{k: meta.get(k) for k in ("ge", "gt", "le", "lt")})
        return _range_text(type_hints(tp)[name], bounds, False)
    return _range_text(tp, Range(), False)


def _range_text(tp: Any, bounds: Range, plural: bool) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        for meta in tp.__metadata__:
            if isinstance(meta, Range):  # its bounds override those given so far
                given = {k: v for k, v in dataclasses.asdict(meta).items() if v is not None}
                bounds = dataclasses.replace(bounds, **given)
        return _range_text(typing.get_args(tp)[0], bounds, plural)
    if tp is Any:
        return "any"
    if tp is type(None):
        return "null"
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        parts: list[str] = []
        for arg in args:
            text = _range_text(arg, bounds, plural)
            if arg is not type(None) and text not in parts:
                parts.append(text)
        if type(None) in args:
            parts.append("null")
        return " or ".join(parts)
    if origin is Literal:
        return " | ".join(_literal_text(c) for c in typing.get_args(tp))
    if tp is bool:
        return "true/false"
    if tp is int or tp is float:
        return _number_text(tp is int, bounds, plural)
    if tp is str:
        return "text"
    if origin in (list, tuple):
        args = typing.get_args(tp)
        if origin is tuple and len(args) > 1 and args[1] is not Ellipsis:
            head = "pair of" if len(args) == 2 else f"list of {len(args)}"
        else:
            head = "list of"
        return f"{head} {_range_text(args[0], bounds, True)}" if args else "list"
    if isinstance(tp, type) and isinstance(getattr(tp, "RANGE_TEXT", None), str):
        return tp.RANGE_TEXT
    if origin is dict or tp is dict or dataclasses.is_dataclass(tp) or hasattr(tp, "from_plain"):
        return "mappings" if plural else "mapping"
    return getattr(tp, "__name__", str(tp))


def _literal_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def _number_text(integer: bool, bounds: Range, plural: bool) -> str:
    ge, gt, le, lt = bounds.ge, bounds.gt, bounds.le, bounds.lt
    if integer:  # an integer > 0 is an integer >= 1: say so
        if gt is not None and float(gt).is_integer():
            ge, gt = (max(ge, gt + 1) if ge is not None else gt + 1), None
        if lt is not None and float(lt).is_integer():
            le, lt = (min(le, lt - 1) if le is not None else lt - 1), None
    noun = ("integers " if integer else "numbers ") if plural else ""
    low = ge if ge is not None else gt
    high = le if le is not None else lt
    if low is None and high is None:
        return noun.strip() if plural else "any"
    if low is not None and high is not None:
        if integer and ge is not None and le is not None:
            return f"{noun}{_bound_text(ge)}–{_bound_text(le)}"
        interval = f"{'[' if ge is not None else '('}{_bound_text(low)}, {_bound_text(high)}{']' if le is not None else ')'}"
        return f"{noun}in {interval}" if plural else interval
    if low is not None:
        return f"{noun}{'≥' if ge is not None else '>'} {_bound_text(low)}"
    return f"{noun}{'≤' if le is not None else '<'} {_bound_text(high)}"


def _bound_text(value: float) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    return f"{value:g}"


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
            raise ConfigError(f"{where}.{exc.where}", exc.message) from None
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
