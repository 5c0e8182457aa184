"""How many models a pool verdict needs (docs/pools.md): F and the attack's AUC of every row as the pool grows,
for pool records of one setting that differ only in `eval.pool_size`. The held-out retrain pool's row is
the reach of the estimators at each N (its F is the most a method can earn, its AUC the least an attack can
show); a method is told apart from it, or from doing nothing, only once its interval clears theirs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from unlearn_bench import verdict
from unlearn_bench.report.formatting import cell
from unlearn_bench.report.plots import clipped_interval, finish
from unlearn_bench.report.pools import score_interval
from unlearn_bench.report.records import FLOOR, ORIGINAL, RETRAIN

CURVE_METRICS = {"forgetting_quality": "F", "lira_auc": "attack AUC"}
LABELS = {FLOOR: "held-out retrain pool", ORIGINAL: "original (do nothing)"}


def split_pool_size(setting_sig: str) -> tuple[int | None, str]:
    """A pool setting's size N and the setting without it (the records of one curve share the latter)."""
    setting = json.loads(setting_sig)
    value = setting.pop("eval.pool_size", None)
    return (int(json.loads(value)) if value is not None else None), json.dumps(setting, sort_keys=True)


def curve_designs(seeds_by_n: dict[int, set]) -> list[tuple[list[int], set]]:
    """Which pool sizes a curve compares, on which forget sets: every N on the sets all of them share; and, where
    the smaller sizes were scored on more sets, the sizes that hold the widest set of forget sets on that set
    (e.g. N = 8 and 16 on three sets beside 8 to 64 on one). Each design needs two N and one shared set."""
    designs = []
    every = set.intersection(*seeds_by_n.values())
    if len(seeds_by_n) >= 2 and every:
        designs.append((sorted(seeds_by_n), every))
    widest = max(seeds_by_n.values(), key=lambda seeds: (len(seeds), sorted(seeds)))
    sizes = sorted(n for n, seeds in seeds_by_n.items() if seeds >= widest)
    if len(sizes) >= 2 and widest != every:
        designs.append((sizes, widest))
    return designs


def setting_designs(frame: pd.DataFrame):
    """(setting's pool records, design label, sizes, forget sets) for every design of every pool setting."""
    pools = frame[(frame["task"] == "pool") & (frame["method"] != RETRAIN)].copy()
    if pools.empty:
        return
    pools["N"], pools["base"] = zip(*pools["setting_sig"].map(split_pool_size))
    for _, setting in pools.groupby("base", sort=False):
        if setting["N"].nunique() < 2:
            continue
        seeds_by_n = {int(n): set(g["seed"]) for n, g in setting.groupby("N")}
        for sizes, seeds in curve_designs(seeds_by_n):
            part = setting[setting["N"].isin(sizes) & setting["seed"].isin(seeds)]
            label = f"N = {', '.join(map(str, sizes))} on forget set{'s' if len(seeds) > 1 else ''} " \
                    f"{', '.join(map(str, sorted(seeds)))}"
            yield part[part.groupby("method")["N"].transform("nunique") >= 2], label, sizes, seeds


def pool_size_agreement(frame: pd.DataFrame) -> pd.DataFrame:
    """Per design and pair of consecutive pool sizes: Kendall τ-b between the methods' final-score rankings at
    the two sizes, forget set by forget set, its mean and 95 % t-interval over the sets (none from one set),
    over the methods scored at both sizes on every set of the design (at least 3). Does the pool size change
    which method ranks where, or only the scores?"""
    from scipy import stats as scipy_stats

    rows = []
    for part, label, sizes, seeds in setting_designs(frame):
        methods = part[~part["reference"].astype(bool)]
        for small, large in zip(sizes, sizes[1:]):
            scores = {n: methods[methods["N"] == n].pivot_table(index="method", columns="seed", values="final_score")
                      for n in (small, large)}
            shared = sorted(set(scores[small].dropna().index) & set(scores[large].dropna().index))
            if len(shared) < 3:
                continue
            taus = [float(scipy_stats.kendalltau(scores[small].loc[shared, seed], scores[large].loc[shared, seed]).statistic)
                    for seed in sorted(seeds)]
            mean, half, n = verdict.t_interval(taus)
            rows.append({"dataset": part["dataset"].iloc[0], "forget": part["forget"].iloc[0], "design": label,
                         "from_N": small, "to_N": large, "methods": len(shared), "n": n, "tau_mean": mean,
                         "tau_ci": half})
    return pd.DataFrame(rows)


def pool_size_curve(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (setting, design, pool size N, row) where a setting has records at two or more N: n forget
    sets, and the mean and 95 % t-interval over them of F and the attack AUC (one forget set: F's interval
    over its examples, the AUC's none). A design holds the forget sets fixed (`curve_designs`), and keeps
    only rows scored at two or more of its N, so a change along N is the pool size's and not a change of
    forget sets. Empty when no setting has two pool sizes on a shared forget set."""
    rows = []
    for part, label, _, _ in setting_designs(frame):
        for (n_models, method), g in part.groupby(["N", "method"], sort=True):
            row = {"dataset": g["dataset"].iloc[0], "forget": g["forget"].iloc[0], "design": label,
                   "N": int(n_models), "method": method, "reference": bool(g["reference"].iloc[0]),
                   "n": g["seed"].nunique()}
            for metric in CURVE_METRICS:
                mean, half = score_interval(g, metric) if metric in g else (math.nan, math.nan)
                row.update({f"{metric}_mean": mean, f"{metric}_ci": half})
            rows.append(row)
    return pd.DataFrame(rows)


def curve_markdown(curve: pd.DataFrame, agreement: pd.DataFrame | None = None) -> str:
    lines = ["## How many models a verdict needs (pool size N)", "",
             "F (1 = indistinguishable from retraining) and the per-example attack's AUC (0.5 = no signal) of every "
             "row scored at two or more pool sizes, on the forget sets scored at every N (so a change along N is the "
             "pool size's), mean ± 95 % interval over those sets (one forget set: F's interval over its examples). The held-out retrain pool is a second sample of retrain models: its F is the most a "
             "method can earn at that N and its AUC the least an attack shows, so a method is told apart from "
             "retraining, or from doing nothing, only where its interval clears that row's.", ""]
    for (dataset, forget, design), part in curve.groupby(["dataset", "forget", "design"], sort=False):
        lines += [f"### {dataset} / {forget} ({design})", "", "| N | row | n | F | attack AUC |", "|---|---|---|---|---|"]
        part = part.assign(first=part["method"].map({FLOOR: 0, ORIGINAL: 1}).fillna(2))
        part = part.sort_values(["N", "first", "method"])
        for r in part.to_dict("records"):
            label = LABELS.get(r["method"], r["method"])
            lines.append(f"| {r['N']} | {label} | {r['n']} | {cell(r['forgetting_quality_mean'], r['forgetting_quality_ci'], 3)} | "
                         f"{cell(r['lira_auc_mean'], r['lira_auc_ci'], 2)} |")
        lines.append("")
        if agreement is not None and not agreement.empty:
            mine = agreement[(agreement["dataset"] == dataset) & (agreement["forget"] == forget)
                             & (agreement["design"] == design)]
            pairs = [f"N = {r['from_N']} against {r['to_N']}: τ = {cell(r['tau_mean'], r['tau_ci'], 2)} "
                     f"({r['methods']} methods, {r['n']} forget set{'s' if r['n'] > 1 else ''})"
                     for r in mine.to_dict("records")]
            if pairs:
                lines += ["Does the pool size change the methods' ranking? Kendall τ-b between the final-score "
                          "rankings at two sizes, forget set by forget set (mean ± 95 % t-interval over the sets): "
                          + "; ".join(pairs) + ".", ""]
    return "\n".join(lines) + "\n"


def plot_curve(curve: pd.DataFrame, path: Path, title: str) -> None:
    """F and AUC against N, one panel row per design, one line per row (the held-out pool and doing nothing
    dashed, each method one colour in every panel), log-2 N axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    designs = list(dict.fromkeys(curve["design"]))
    methods = list(dict.fromkeys(curve.sort_values("method")["method"]))
    methods = [m for m in methods if m not in (FLOOR, ORIGINAL)]
    colours = {FLOOR: "black", ORIGINAL: "dimgrey", **{m: plt.get_cmap("tab20")(i % 20) for i, m in enumerate(methods)}}
    fig, axes = plt.subplots(len(designs), 2, figsize=(16, 5.5 * len(designs)), squeeze=False)
    for row_axes, design in zip(axes, designs):
        part = curve[curve["design"] == design]
        sizes = sorted(part["N"].unique())
        for ax, (metric, label) in zip(row_axes, CURVE_METRICS.items()):
            for method, g in part.groupby("method", sort=True):
                g = g.sort_values("N")
                style = "--" if method in (FLOOR, ORIGINAL) else "-"
                mean, half = g[f"{metric}_mean"], g[f"{metric}_ci"].fillna(0.0)
                bars = [side.to_numpy() for side in clipped_interval(mean, half, 1.0)]  # F and the AUC lie in [0, 1]
                ax.errorbar(g["N"], mean, yerr=bars, fmt=style + "o", capsize=3, color=colours[method],
                            label=LABELS.get(method, method))
            ax.set_xscale("log", base=2)
            ax.set_xticks(sizes, [str(n) for n in sizes])
            ax.set_xlabel("pool size N (retrain models; runs of each method)")
            ax.set_ylabel(label)
            if metric == "lira_auc":
                ax.axhline(0.5, color="grey", linewidth=0.8)
            n_text = ", ".join(sorted({str(int(n)) for n in part["n"]}))
            ax.set_title(f"{label} as the pool grows: {design} (n = {n_text})", fontsize=9)
        row_axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    finish(fig, path, f"{title}\nmean ± 95 % interval over forget sets (one forget set: F over its examples), "
           "cut to [0, 1]")
