"""One registry per concept; entries are selected by the `name:` key of their Hydra config."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from unlearn_bench.errors import ConfigError, did_you_mean

T = TypeVar("T", bound=Callable)
Check = Callable[[Any], None]


class Registry(Generic[T]):
    """Name -> callable. Loud on mistakes: a duplicate name raises, an unknown one lists the choices."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._checks: dict[str, Check] = {}
        self._cell_checks: dict[str, Check] = {}
        self._uses: dict[str, tuple[str, ...]] = {}

    def register(self, name: str, check: Check | None = None, check_cell: Check | None = None,
                 uses: tuple[str, ...] = ()) -> Callable[[T], T]:
        """`check(cfg)` validates the entry's config group before any work starts (a bad switch then fails
        in a second, not after the reference models have trained); `check_cell(cfg)` validates the entry
        against the whole config (the forget set, the model, the data it needs); both raise ConfigError.
        `uses` names what the entry reads from the reference models besides their weights (the protocol
        records it only for entries that use it), so no entry's name appears outside its own module."""
        def decorator(fn: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice "
                                 f"({self._entries[name].__module__} and {fn.__module__})")
            self._entries[name] = fn
            if check is not None:
                self._checks[name] = check
            if check_cell is not None:
                self._cell_checks[name] = check_cell
            self._uses[name] = tuple(uses)
            return fn

        return decorator

    def check_cell(self, name: str, cfg: Any) -> None:
        """Run the entry's check against the whole config, where it has one (unknown names are get()'s)."""
        if name in self._cell_checks:
            self._cell_checks[name](cfg)

    def declared_check(self, name: str) -> Check | None:
        """The entry's own check, where it registered one (tests read what it declares)."""
        return self._checks.get(name)

    def uses(self, name: str) -> tuple[str, ...]:
        return self._uses.get(name, ())

    def check(self, name: str, cfg: Any) -> T:
        """The entry, after its config passed the entry's check."""
        fn = self.get(name)
        if name in self._checks:
            self._checks[name](cfg)
        return fn

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise ConfigError(f"{self.kind}.name", name, f"{', '.join(sorted(self._entries))}"
                                                       f"{did_you_mean(name, self._entries)}")
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
