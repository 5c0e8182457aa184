"""One registry per concept; entries are selected by the `name:` key of their Hydra config."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from unlearn_bench.errors import ConfigError

T = TypeVar("T", bound=Callable)


class Registry(Generic[T]):
    """Name -> callable. Loud on mistakes: a duplicate name raises, an unknown one lists the choices."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(fn: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice "
                                 f"({self._entries[name].__module__} and {fn.__module__})")
            self._entries[name] = fn
            return fn

        return decorator

    def get(self, name: str) -> T:
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"{self.kind}.name", name, f"{', '.join(sorted(self._entries))}{hint}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))


def import_submodules(package_name: str) -> None:
    """Import every module of a package so that its entries register themselves."""
    import importlib
    import pkgutil

    package = importlib.import_module(package_name)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package_name}.{info.name}")
