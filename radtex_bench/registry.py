"""Named registries for objectives, encoders and dataset kinds.

Built-ins register with a decorator when their module is imported. Third-party plug-ins register the
same way from a module listed in the recipe's ``plugins:`` (or the CLI's ``--plugin``) or named in the
entry-point groups ``radtex_bench.objectives`` / ``radtex_bench.protocols`` (an entry that names a
module may register anything); nothing else is ever imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import ConfigError, UserError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, base: type | None = None):
        self.kind = kind
        self.base = base
        self._items: dict[str, T] = {}
        self._origin: dict[str, str] = {}

    def register(self, name: str) -> Callable[[T], T]:
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise UserError(f"{self.kind} name {name!r} must be a non-empty identifier-like string")

        def decorator(obj: T) -> T:
            if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
                raise UserError(
                    f"cannot register {self.kind} '{name}': {obj!r} is not a subclass of "
                    f"{self.base.__module__}.{self.base.__qualname__}"
                )
            origin = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"
            if name in self._items and self._origin[name] != origin:
                raise UserError(
                    f"{self.kind} name '{name}' is registered twice: by {self._origin[name]} and by "
                    f"{origin}; rename one of them"
                )
            self._items[name] = obj
            self._origin[name] = origin
            return obj

        return decorator

    def get(self, name: str, where: str = "") -> T:
        """The entry called ``name``; an unknown name is a :class:`ConfigError` at the recipe key
        ``where`` (so a ``--set`` that wrote it is named), with a did-you-mean."""
        if name not in self._items:
            message = f"unknown {self.kind} '{name}'{did_you_mean(name, self._items)}"
            raise ConfigError(where, message) if where else UserError(message)
        return self._items[name]

    def origin(self, name: str) -> str:
        return self._origin[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def import_plugin(module: str, where: str = "plugins") -> None:
    """Import a plug-in module named in a recipe, turning any failure into a clear user error."""
    if not isinstance(module, str) or not module:
        raise UserError(f"{where}: a plug-in must be an importable module path such as 'my_pkg.objectives'")
    try:
        importlib.import_module(module)
    except UserError:
        raise
    except ModuleNotFoundError as exc:
        raise UserError(
            f"{where}: cannot import plug-in module '{module}' ({exc}); install it or add its folder "
            "to PYTHONPATH"
        ) from exc
    except Exception as exc:  # a plug-in that crashes on import is the user's bug, not ours
        raise UserError(
            f"{where}: plug-in module '{module}' failed to import: {type(exc).__name__}: {exc}"
        ) from exc


_ENTRY_POINTS_LOADED: set[str] = set()


def load_entry_points(group: str, registry: Registry | None = None) -> None:
    """Load every entry point of ``group`` (once per process).

    An entry point may name a module (whose import registers its objects) or an object; an object
    not registered yet is registered under the entry point's name.
    """
    if group in _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED.add(group)
    from importlib.metadata import entry_points

    for ep in entry_points(group=group):
        try:
            obj = ep.load()
            if registry is not None and isinstance(obj, type) and obj not in registry._items.values():
                registry.register(ep.name)(obj)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(
                f"entry point '{ep.name}' ({ep.value}) in group '{group}' failed to load: "
                f"{type(exc).__name__}: {exc}; fix or uninstall the package that declares it"
            ) from exc
