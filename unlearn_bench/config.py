"""OmegaConf resolvers the configs use. Imported with the package, so compose() and the CLI both see them."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"  # the config groups (Hydra's config_path)


def by_rate(rate: float | None, table: dict) -> object:
    """The value of `table` (rate -> value) at the nearest listed rate; the smallest rate's value when the
    forget set is not given by a rate (class-wise forgetting, or a count)."""
    rates = sorted(float(k) for k in table)
    key = rates[0] if rate is None else min(rates, key=lambda r: abs(r - float(rate)))
    return {float(k): v for k, v in table.items()}[key]


def by_dataset(name: str, table: dict, default: object) -> object:
    """The value of `table` (dataset name -> value) for this dataset, `default` for a dataset it does not
    list. The resolved value is what the record stores, so a reader sees what ran, not a rule."""
    return table.get(str(name), default)


def is_method_config(value: object) -> bool:
    """Whether a value inside a method config is itself a method config (RUM's strata): the one nesting rule
    that the cell id (tracking.without_introduced) and the report (records.with_introduced) both follow."""
    return isinstance(value, dict) and "name" in value


def register_resolvers() -> None:
    for name, fn in (("by_rate", by_rate), ("by_dataset", by_dataset)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
    # The launching process's id, cached like Hydra's `now`: a multirun copies the resolver cache of its
    # master config into each job's config, so a worker resolves the sweep folder to the parent's id.
    if not OmegaConf.has_resolver("pid"):
        OmegaConf.register_new_resolver("pid", os.getpid, use_cache=True)
