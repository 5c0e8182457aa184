"""How a statistic is printed in a table: two decimals, an interval half-width, a p-value, a section's title."""

from __future__ import annotations

import pandas as pd


def number(value: float) -> str:
    """A statistic for a Markdown table: two decimals, n/a where it is undefined."""
    return "n/a" if pd.isna(value) else f"{value:.2f}"


def cell(mean: float, half: float, digits: int = 2) -> str:
    if pd.isna(mean):
        return "-"
    return f"{mean:.{digits}f}" + ("" if pd.isna(half) else f" ± {half:.{digits}f}")


def section_title(keys: tuple) -> str:
    title = " / ".join(str(k) for k in keys[:4])
    return f"{title} [{keys[4]}]" if keys[4] else title


def p_text(p: float) -> str:
    return number(p) if pd.isna(p) or p >= 0.01 else f"{p:.1e}"


