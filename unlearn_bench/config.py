"""OmegaConf resolvers the configs use. Imported with the package, so compose() and the CLI both see them."""

from __future__ import annotations

from omegaconf import OmegaConf


def by_rate(rate: float | None, table: dict) -> object:
    """The value of `table` (rate -> value) at the nearest listed rate; the smallest rate's value when the
    forget set is not given by a rate (class-wise forgetting, or a count)."""
    rates = sorted(float(k) for k in table)
    key = rates[0] if rate is None else min(rates, key=lambda r: abs(r - float(rate)))
    return {float(k): v for k, v in table.items()}[key]


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("by_rate"):
        OmegaConf.register_new_resolver("by_rate", by_rate)
