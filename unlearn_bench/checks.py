"""The kinds a config value can be checked as (an integer in a range, a finite number in a range, one of a set,
a boolean, optional, increasing fractions), each failing the same way: one line naming the key, the value
and what is accepted (ConfigError). The lowest layer of validation: methods, metrics and the training loop
check their own switches with these; validate.py, above them, checks whole configurations."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from omegaconf import DictConfig, ListConfig, OmegaConf

from unlearn_bench.errors import ConfigError

Check = Callable[[str, object], None]


def integer(low: int | None = None, high: int | None = None) -> Check:
    def check(key: str, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low) or (
                high is not None and value > high):
            bounds = "" if low is None and high is None else (
                f" >= {low}" if high is None else f" in [{low if low is not None else '-inf'}, {high}]")
            raise ConfigError(key, value, f"an integer{bounds}")
    return check


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False) -> Check:
    def check(key: str, value: object) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            if high is None:
                bounds = "" if low is None else f" {'>' if low_open else '>='} {low:g}"
            else:
                bounds = (f" in {'(' if low_open else '['}{low if low is not None else '-inf':g}, {high:g}"
                          f"{')' if high_open else ']'}")
            raise ConfigError(key, value, f"a finite number{bounds}")
    return check


def positive(key: str, value: object) -> None:
    number(0.0, low_open=True)(key, value)


def choice(*options: object) -> Check:
    def check(key: str, value: object) -> None:
        if isinstance(value, bool) and not any(isinstance(o, bool) for o in options) or value not in options:
            raise ConfigError(key, value, options)
    return check


def boolean(key: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(key, value, "true or false")


def auto_or_boolean(key: str, value: object) -> None:
    """A switch decided per device when `auto` (perf.*)."""
    if value != "auto" and not isinstance(value, bool):
        raise ConfigError(key, value, "auto, true or false")


def optional(inner: Check) -> Check:
    def check(key: str, value: object) -> None:
        if value is not None:
            inner(key, value)
    return check


def text(pattern: str, accepted: str) -> Check:
    """A string matching `pattern` (whole), e.g. a device name or a checksum."""
    def check(key: str, value: object) -> None:
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise ConfigError(key, value, accepted)
    return check


def passes(check: Check, value: object) -> bool:
    """Whether `value` passes `check` (a kind used as a predicate: list items, alternatives)."""
    try:
        check("", value)
    except ConfigError:
        return False
    return True


def one_of(*checks: Check) -> Check:
    """A value that passes any of `checks` (e.g. "auto" or a positive number); the last one's error otherwise."""
    def check(key: str, value: object) -> None:
        if not any(passes(inner, value) for inner in checks[:-1]):
            checks[-1](key, value)
    return check


def items_of(value: object) -> list | None:
    """A list value's items (a list, tuple or ListConfig), None for anything else."""
    return list(value) if isinstance(value, (list, tuple, ListConfig)) else None


def shown(value: object) -> object:
    """A value as an error line shows it (a ListConfig as its plain list)."""
    return OmegaConf.to_container(value) if isinstance(value, ListConfig) else value


def list_of(item: Check, accepted: str) -> Check:
    """A non-empty list whose every item passes `item`; one line naming the whole list otherwise."""
    def check(key: str, value: object) -> None:
        items = items_of(value)
        if not items or not all(passes(item, v) for v in items):
            raise ConfigError(key, shown(value), accepted)
    return check


def numbers(low: float | None = None, *, low_open: bool = False) -> Check:
    """A non-empty list of finite numbers (per-channel statistics)."""
    bound = "" if low is None else f" {'>' if low_open else '>='} {low:g}"
    return list_of(number(low, low_open=low_open), f"a non-empty list of numbers{bound}")


def string(key: str, value: object) -> None:
    if not isinstance(value, str):
        raise ConfigError(key, value, "a string")


names = list_of(string, "a non-empty list of names")


def fractions(key: str, value: object) -> None:
    """MultiStep milestones: increasing fractions of training in (0, 1)."""
    items = items_of(value)
    fraction = number(0.0, 1.0, low_open=True, high_open=True)
    if not items or not all(passes(fraction, v) for v in items) or items != sorted(items):
        raise ConfigError(key, shown(value), "a non-empty increasing list of fractions of training in (0, 1)")


COUNT_KEYS = ("epochs", "steps", "batch_size", "samples")  # counted, so integers


def check_positive(cfg: DictConfig, prefix: str, keys: tuple[str, ...]) -> None:
    """Budgets and learning rates, with the kinds the runner's validation uses: counts are integers >= 1,
    the rest finite numbers > 0. Functions called without the runner (tests, scripts) check here."""
    for key in keys:
        (integer(1) if key in COUNT_KEYS else positive)(f"{prefix}.{key}", cfg.get(key))


def check_choices(cfg: DictConfig, prefix: str, choices: dict[str, tuple]) -> None:
    for key, accepted in choices.items():
        if cfg.get(key) not in accepted:
            raise ConfigError(f"{prefix}.{key}", cfg.get(key), accepted)


def keys_check(group: str, kinds: dict[str, Check], then: Callable[[DictConfig], None] | None = None):
    """The check a config group's entry registers: each of its keys against its kind, in one line, then
    `then` for rules across keys. `check.keys` lists the declared keys (a test matches them to the YAMLs)."""
    def check(cfg: DictConfig) -> None:
        for key, kind in kinds.items():
            kind(f"{group}.{key}", cfg.get(key))
        if then is not None:
            then(cfg)
    check.keys = tuple(kinds)
    return check

