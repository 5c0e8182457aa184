"""How many models a pool verdict needs (docs/pools.md): F and the attack's AUC of every row as the pool grows,
for pool records of one setting that differ only in `eval.pool_size`. The held-out retrain pool's row is
the reach of the estimators at each N (its F is the most a method can earn, its AUC the least an attack can
show); a method is told apart from it, or from doing nothing, only once its interval clears theirs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from unlearn_bench.report.formatting import cell
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


def pool_size_curve(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (setting, design, pool size N, row) where a setting has records at two or more N: n forget
    sets, and the mean and 95 % t-interval over them of F and the attack AUC (one forget set: F's interval
    over its examples, the AUC's none). A design holds the forget sets fixed (`curve_designs`), and keeps
    only rows scored at two or more of its N, so a change along N is the pool size's and not a change of
    forget sets. Empty when no setting has two pool sizes on a shared forget set."""
    pools = frame[(frame["task"] == "pool") & (frame["method"] != RETRAIN)].copy()
    if pools.empty:
        return pd.DataFrame()
    pools["N"], pools["base"] = zip(*pools["setting_sig"].map(split_pool_size))
    rows = []
    for _, setting in pools.groupby("base", sort=False):
        if setting["N"].nunique() < 2:
            continue
        seeds_by_n = {int(n): set(g["seed"]) for n, g in setting.groupby("N")}
        for sizes, seeds in curve_designs(seeds_by_n):
            part = setting[setting["N"].isin(sizes) & setting["seed"].isin(seeds)]
            part = part[part.groupby("method")["N"].transform("nunique") >= 2]
            label = f"N = {', '.join(map(str, sizes))} on forget set{'s' if len(seeds) > 1 else ''} " \
                    f"{', '.join(map(str, sorted(seeds)))}"
            for (n_models, method), g in part.groupby(["N", "method"], sort=True):
                row = {"dataset": g["dataset"].iloc[0], "forget": g["forget"].iloc[0], "design": label,
                       "N": int(n_models), "method": method, "reference": bool(g["reference"].iloc[0]),
                       "n": g["seed"].nunique()}
                for metric in CURVE_METRICS:
                    mean, half = score_interval(g, metric) if metric in g else (math.nan, math.nan)
                    row.update({f"{metric}_mean": mean, f"{metric}_ci": half})
                rows.append(row)
    return pd.DataFrame(rows)


def curve_markdown(curve: pd.DataFrame) -> str:
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
    return "\n".join(lines) + "\n"


def plot_curve(curve: pd.DataFrame, path: Path, title: str) -> None:
    """F and AUC against N, one panel row per design, one line per row (the held-out pool and doing nothing
    dashed, each method one colour in every panel), log-2 N axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    designs = list(dict.fromkeys(curve["design"]))
    methods = list(dict.fromkeys(curve.sort_values("method")["method"]))
    colours = {m: plt.get_cmap("tab20")(i % 20) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(len(designs), 2, figsize=(16, 5.5 * len(designs)), squeeze=False)
    for row_axes, design in zip(axes, designs):
        part = curve[curve["design"] == design]
        sizes = sorted(part["N"].unique())
        for ax, (metric, label) in zip(row_axes, CURVE_METRICS.items()):
            for method, g in part.groupby("method", sort=True):
                g = g.sort_values("N")
                style = "--" if method in (FLOOR, ORIGINAL) else "-"
                ax.errorbar(g["N"], g[f"{metric}_mean"], yerr=g[f"{metric}_ci"].fillna(0.0), fmt=style + "o",
                            capsize=3, color=colours[method], label=LABELS.get(method, method))
            ax.set_xscale("log", base=2)
            ax.set_xticks(sizes, [str(n) for n in sizes])
            ax.set_xlabel("pool size N (retrain models; runs of each method)")
            ax.set_ylabel(label)
            if metric == "lira_auc":
                ax.axhline(0.5, color="grey", linewidth=0.8)
            n_text = ", ".join(sorted({str(int(n)) for n in part["n"]}))
            ax.set_title(f"{label} as the pool grows: {design} (n = {n_text})", fontsize=9)
        row_axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.suptitle(f"{title}\nmean ± 95 % interval over forget sets (one forget set: F over its examples)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
