"""The statistics of one classification setting: per configuration the mean and 95 % interval of every metric,
the paired tests against the best row, the floor and doing nothing, rank stability over seeds, and the
regime line (docs/statistics.md)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from unlearn_bench import verdict
from unlearn_bench.report.comparisons import MIN_SEEDS_FOR_BEST, compare_methods, paired
from unlearn_bench.report.records import FLOOR, METRICS, ORIGINAL, RETRAIN


def gap_of_means(method: pd.DataFrame, retrain: pd.DataFrame, over: list[str]) -> float:
    """The papers' estimator: average each metric over the seeds both share, then mean |difference|."""
    seeds = sorted(set(method["seed"]) & set(retrain["seed"]))
    if not seeds:
        return math.nan
    a = method.set_index("seed").loc[seeds, over].astype(float).mean()
    b = retrain.set_index("seed").loc[seeds, over].astype(float).mean()
    return float((a - b).abs().mean())


def gaps_by_seed(rows: pd.DataFrame, rename: dict[str, str] | None = None) -> dict[str, dict[int, float]]:
    """{method: {seed: per-seed Avg Gap}}: what the rank statistics of verdict.py take; `rename` maps a
    method's label to the one it is compared under."""
    rename = rename or {}
    return {rename.get(m, m): dict(zip(g["seed"], g["avg_gap"].astype(float)))
            for m, g in rows.groupby("method", sort=False)}


def setting_statistics(part: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """One setting's rows: mean, 95 % t-interval and n of every metric, both gap estimators, the paired test
    against the best method, the marks; plus the setting's regime and rank stability."""
    over = json.loads(part["gap_over"].iloc[0])
    retrain = part[part["method"] == RETRAIN]
    rows = []
    for method, rows_m in part.groupby("method", sort=False):
        # n: the seeds the Avg Gap averages (a NaN gap is left out, and named when the records load); rows
        # without an Avg Gap at all (generation) count their seeds
        gaps = pd.to_numeric(rows_m["avg_gap"], errors="coerce") if "avg_gap" in rows_m else pd.Series(dtype=float)
        finite = gaps.notna() & gaps.abs().ne(float("inf"))
        counted = rows_m.loc[finite, "seed"] if finite.any() else rows_m["seed"]
        row = {"method": method, "n": counted.nunique(), "diverged": int(rows_m["diverged"].sum()),
               "reference": bool(rows_m["reference"].iloc[0])}
        for metric in METRICS:
            if metric in rows_m and rows_m[metric].notna().any():
                mean, half, n = verdict.t_interval(rows_m[metric].dropna().astype(float).tolist())
                row.update({f"{metric}_mean": mean, f"{metric}_ci": half})
        if "avg_gap_mean" in row:
            row["avg_gap_of_means"] = 0.0 if method == RETRAIN else gap_of_means(rows_m, retrain, over)
        rows.append(row)
    table = pd.DataFrame(rows)
    stats = {"tau": math.nan, "tau_halves": (0, 0), "best": None}
    if "avg_gap_mean" not in table:
        return table, stats
    by_method = {m: g for m, g in part.groupby("method", sort=False)}
    table["p_vs_best"] = table["p_vs_best_adj"] = table["detectable_vs_best"] = math.nan
    stats.update(compare_methods(table, by_method, (FLOOR, ORIGINAL)))
    for i in table.index[table["diverged"] > 0]:  # the declared rule: kept in the mean, flagged in every format
        note = f"{int(table.loc[i, 'diverged'])} of {int(table.loc[i, 'n'])} runs diverged (kept in the mean)"
        table.loc[i, "marks"] = "; ".join(filter(None, [table.loc[i, "marks"], note]))
    tau, first, second, left_out = verdict.kendall_halves(gaps_by_seed(part[~part["reference"]]))
    if min(first, second) < MIN_SEEDS_FOR_BEST:  # a ranking from fewer seeds is noise, not a ranking
        tau = math.nan
    stats.update(tau=tau, tau_halves=(first, second), tau_left_out=left_out)
    order = {RETRAIN: 0, FLOOR: 1}
    table["rank"] = [order.get(m, 2) for m in table["method"]]
    table = table.sort_values(["rank", "avg_gap_mean"]).reset_index(drop=True)
    table["rank"] = range(len(table))
    return table, stats


def regime_summary(part: pd.DataFrame) -> dict:
    """Mean regime of a setting over its seeds (from the original, retrain and floor rows)."""
    def mean_of(method: str, metric: str) -> float:
        values = part.loc[part["method"] == method, metric].dropna().astype(float)
        return float(values.mean()) if len(values) else math.nan

    forget_acc, retain_acc, ta = 100.0 - mean_of(ORIGINAL, "UA"), mean_of(ORIGINAL, "RA"), mean_of(ORIGINAL, "TA")
    original_gap, floor = mean_of(ORIGINAL, "avg_gap"), mean_of(FLOOR, "avg_gap")
    ratio = original_gap / floor if floor and floor > 0 else (math.inf if floor == 0 else math.nan)
    summary = {"original_forget_acc": forget_acc, "original_retain_acc": retain_acc, "original_TA": ta,
               "original_gen_gap": retain_acc - ta, "original_gap": original_gap, "retrain_floor": floor,
               "gap_over_floor": ratio}
    summary["misses"] = verdict.bar_misses(forget_acc, retain_acc, retain_acc - ta, ratio)
    if math.isnan(floor):
        summary["misses"].append("no retrain floor in these records (no second retrain model)")
    return summary


def regime_text(summary: dict) -> str:
    text = (f"Regime (mean over seeds): original forget acc {summary['original_forget_acc']:.1f}, retain acc "
            f"{summary['original_retain_acc']:.1f}, TA {summary['original_TA']:.1f} (generalisation gap "
            f"{summary['original_gen_gap']:.1f}); doing nothing's Avg Gap {summary['original_gap']:.2f}, retrain "
            f"floor {summary['retrain_floor']:.2f} (ratio {verdict.floor2(summary['gap_over_floor'])}, rounded down).")
    if summary["misses"]:
        return text + " **WARNING: misses the regime bar (docs/statistics.md): " + "; ".join(summary["misses"]) + ".**"
    return text + " Meets the regime bar (docs/statistics.md)."



def rows_difference(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """Two rows' per-seed Avg Gaps on the seeds both have: n, each row's mean, the mean difference a − b with
    its 95 % t-interval half-width and their spread, p of the paired two-sided t-test (verdict.paired_difference
    over the finite differences; p is NaN when one is not finite), and those finite differences themselves."""
    ours, theirs = paired(a, b)
    diff = np.asarray(ours, dtype=float) - np.asarray(theirs, dtype=float)
    found = verdict.paired_difference(diff[np.isfinite(diff)])
    n = found["n"]
    return {"n": n, "a_gap": float(pd.Series(ours).mean()) if n else math.nan,
            "b_gap": float(pd.Series(theirs).mean()) if n else math.nan, "difference": found["mean"],
            "difference_ci": found["half"], "sd": found["sd"], "p": found["p"] if np.isfinite(diff).all() else math.nan,
            "differences": diff[np.isfinite(diff)].tolist()}


