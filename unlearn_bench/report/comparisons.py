"""The declared families of comparisons of one classification setting (docs/statistics.md), each read as a
test: every method against the best (is it distinguishable from it?), against the retrain floor and against
doing nothing (distinguishable, equivalent within δ, or undecided at this n). Holm's step-down correction
runs within each family over the setting's methods; the marks and the summary line use the adjusted p."""

from __future__ import annotations

import math

import pandas as pd

from unlearn_bench import verdict
from unlearn_bench.report.stats import (
    ALPHA,
    POWER,
    detectable_difference,
    family_alpha,
    family_size,
    holm,
    tost,
)
from unlearn_bench.verdict import paired_difference

MIN_SEEDS_FOR_BEST = verdict.MIN_SEEDS  # no "best" (and so no test against it) from fewer seeds
FAMILIES = ("every method against the best of its setting (two-sided paired t-test)",
            "every method against the retrain floor (paired t-test and two one-sided tests)",
            "every method against doing nothing (paired t-test and two one-sided tests)")


def paired(method: pd.DataFrame, other: pd.DataFrame) -> tuple[list[float], list[float]]:
    """Per-seed Avg Gaps of two rows on the seeds they share, in seed order."""
    a, b = method.set_index("seed")["avg_gap"], other.set_index("seed")["avg_gap"]
    seeds = sorted(set(a.index) & set(b.index))
    return [float(a[s]) for s in seeds], [float(b[s]) for s in seeds]


def differences(a: pd.DataFrame, b: pd.DataFrame) -> list[float]:
    """Per-seed Avg Gap of a minus b on the seeds both rows have, in seed order."""
    return [x - y for x, y in zip(*paired(a, b))]


def outcome(p_adjusted: float, tost_adjusted: float, mean: float, n: int, lower: str, higher: str) -> str:
    """Three outcomes of one paired comparison at α: `lower` / `higher` where the difference test rejects
    (by the sign of the mean difference), `equivalent` where the two one-sided tests reject (|difference| <
    δ), else undecided at this n. One seed tests nothing."""
    if n < 2:
        return "one seed: untested"
    if p_adjusted < ALPHA:
        return lower if mean < 0 else higher
    if tost_adjusted < ALPHA:
        return "equivalent"
    return f"undecided at n = {n}"


def reference_family(diffs: list[list[float]], margin: float) -> tuple[list[dict], list[float], list[float]]:
    """One family against a reference row, from each row's paired differences: its `paired_difference`, and
    the Holm-adjusted p of the difference test and of the two one-sided tests against the margin δ."""
    found = [paired_difference(d) for d in diffs]
    return found, list(holm([f["p"] for f in found])), list(holm([tost(d, margin) for d in diffs]))


def against_reference(table: pd.DataFrame, rows: list[int], by_method: dict, reference: str, margin: float,
                      prefix: str, lower: str, higher: str) -> None:
    """One family: every row in `rows` against the reference row, difference test and TOST with margin δ,
    Holm within each test; writes <prefix>_p, <prefix>_p_adj, <prefix>_tost_adj and the outcome <prefix>."""
    diffs = [differences(by_method[table.loc[i, "method"]], by_method[reference]) for i in rows]
    found, adjusted, tost_adjusted = reference_family(diffs, margin)
    for i, f, p_adj, t_adj in zip(rows, found, adjusted, tost_adjusted):
        table.loc[i, [f"{prefix}_p", f"{prefix}_p_adj", f"{prefix}_tost_adj"]] = [f["p"], p_adj, t_adj]
        table.loc[i, prefix] = outcome(p_adj, t_adj, f["mean"], f["n"], lower, higher)


def tests_against_best(found: list[dict]) -> tuple[list[float], int, list[float]]:
    """The family of paired differences against the best (`paired_difference` results): each one's Holm-adjusted
    p, the family's size and the smallest difference each test detects at α / size with power 0.8."""
    adjusted = list(holm([f["p"] for f in found]))
    family = family_size([f["p"] for f in found])
    return adjusted, family, [detectable_difference(f["sd"], f["n"], family_alpha(family)) for f in found]


def compare_methods(table: pd.DataFrame, by_method: dict, references: tuple[str, str]) -> dict:
    """Fill the comparison columns of a setting's table in place and return the setting's facts: the best
    (None where fewer than MIN_SEEDS_FOR_BEST seeds or where it is not below doing nothing), δ, and the range
    of the smallest difference the Holm-corrected tests against the best detect (α / family size, power 0.8,
    observed spread) and the family's size."""
    floor, original = references
    methods = [i for i in table.index if not table.loc[i, "reference"] and pd.notna(table.loc[i, "avg_gap_mean"])]
    margin = float(table.loc[table["method"] == floor, "avg_gap_mean"].iloc[0]) if floor in by_method else math.nan
    facts = {"best": None, "margin": margin, "no_best": "", "detectable": (math.nan, math.nan), "family": 0}
    for column in ("vs_floor", "vs_nothing", "marks"):
        table[column] = ""
    table["tied_with_best"] = False
    if floor in by_method:
        against_reference(table, methods, by_method, floor, margin, "vs_floor", "below", "above")
    if original in by_method:
        against_reference(table, methods, by_method, original, margin, "vs_nothing", "below", "above")
    candidates = [i for i in methods if table.loc[i, "n"] >= MIN_SEEDS_FOR_BEST]
    if not candidates:
        facts["no_best"] = f"no method has {MIN_SEEDS_FOR_BEST} seeds: no best is named"
        return facts
    best_i = min(candidates, key=lambda i: table.loc[i, "avg_gap_mean"])
    best = table.loc[best_i, "method"]
    if original in by_method and table.loc[best_i, "vs_nothing"] != "below":
        facts["no_best"] = (f"the lowest mean gap ({best}) is not below doing nothing "
                            f"({table.loc[best_i, 'vs_nothing']}): no best is named")
        return facts
    facts["best"] = best
    others = [i for i in methods if i != best_i]
    found = [paired_difference(differences(by_method[table.loc[i, "method"]], by_method[best])) for i in others]
    adjusted, facts["family"], seen_by_row = tests_against_best(found)
    detectable = []
    for i, f, p_adj, seen in zip(others, found, adjusted, seen_by_row):
        table.loc[i, ["p_vs_best", "p_vs_best_adj", "detectable_vs_best"]] = [f["p"], p_adj, seen]
        if math.isfinite(seen):
            detectable.append(seen)
        if f["n"] >= 2 and not p_adj < ALPHA:
            table.loc[i, "tied_with_best"] = True
            unseen = f", a difference below {seen:.2f} could go unseen" if math.isfinite(seen) else ""
            table.loc[i, "marks"] = f"not distinguishable from the best at n = {f['n']}{unseen}"
    table.loc[best_i, ["tied_with_best", "marks"]] = [True, "best"]
    if detectable:
        facts["detectable"] = (min(detectable), max(detectable))
    return facts


def summary_line(stats: dict, n_seeds: int) -> str:
    """The setting's verdict under its table (Markdown): the best or why none is named, δ, the power."""
    parts = []
    if stats.get("best"):
        parts.append(f"Best: **{stats['best']}** (lowest mean per-seed Avg Gap, below doing nothing); bold: the best "
                     "and the methods not distinguishable from it after Holm's correction")
    elif stats.get("no_best"):
        parts.append(f"No best: {stats['no_best']}")
    low, high = stats.get("detectable", (math.nan, math.nan))
    if math.isfinite(low):
        parts.append(f"at n = {n_seeds} the Holm-corrected tests against the best detect a paired difference of "
                     f"{low:.2f}–{high:.2f} with power {POWER} (α = {ALPHA} / {stats.get('family', 1)}, the level "
                     "Holm's procedure rejects at in any step; from each pair's observed spread); a smaller one "
                     "could go unseen")
    if math.isfinite(stats.get("margin", math.nan)):
        parts.append(f"δ (equivalence margin against the floor and doing nothing) = the retrain floor's mean gap, "
                     f"{stats['margin']:.2f}")
    return "; ".join(parts) + "." if parts else ""
