"""The leaderboard as Markdown: the table, its legend, per setting the regime line, the best row and the rows not
distinguishable from it (page.py renders the same text as the HTML page)."""

from __future__ import annotations

import argparse
import math

import pandas as pd

from unlearn_bench import verdict
from unlearn_bench.report.comparisons import FAMILIES, MIN_SEEDS_FOR_BEST, summary_line
from unlearn_bench.report.formatting import cell, section_title
from unlearn_bench.report.pools import POOL_LEGEND, pool_pretty, pool_summary
from unlearn_bench.report.records import COMPARISON_METRICS, FLOOR, GROUP, METRICS
from unlearn_bench.report.settings import regime_text


def pretty(table: pd.DataFrame) -> pd.DataFrame:
    """The printed columns: mean ± 95 % CI half-width per metric, both gap estimators, the test and marks."""
    shown = table[[c for c in ("method", "n") if c in table]].copy()
    for m in METRICS:
        if f"{m}_mean" in table:
            label = "Avg Gap (per-seed)" if m == "avg_gap" else m
            digits = 3 if m in COMPARISON_METRICS else 2
            shown[label] = [cell(a, b, digits) for a, b in zip(table[f"{m}_mean"], table[f"{m}_ci"])]
            if m == "avg_gap":
                shown["Avg Gap (gap of means)"] = [cell(a, math.nan) for a in table["avg_gap_of_means"]]
    if "p_vs_best" in table:
        shown["p vs best (Holm)"] = ["" if pd.isna(p) else f"{p:.3f}" for p in table["p_vs_best_adj"]]
        for column, label in (("vs_floor", "vs retrain floor"), ("vs_nothing", "vs doing nothing")):
            if column in table:
                shown[label] = table[column].fillna("")
        shown["marks"] = table["marks"].fillna("")
    if "diverged" in table and table["diverged"].any():
        shown["diverged"] = table["diverged"]
    return shown


def setting_text(stats: dict, part: pd.DataFrame) -> str:
    """Under a setting's table: the best or why none is named, the power, δ, and the rank stability."""
    first, second = stats["tau_halves"]
    if pd.isna(stats["tau"]):
        tau = (f"not computed (needs {MIN_SEEDS_FOR_BEST} seeds in each half and 2 methods; here {first} and "
               f"{second} seeds)")
    else:
        tau = f"{stats['tau']:.2f} ({first} and {second} seeds)"
    left_out = stats.get("tau_left_out")
    return (summary_line(stats, int(part["n"].max())) + " Rank stability: Kendall τ between the rankings on two "
            f"disjoint halves of the seeds = {tau}"
            + (f"; left out of τ, missing one of those seeds: {', '.join(left_out)}" if left_out else "") + ".")


def bold_rows(table: pd.DataFrame) -> list[bool]:
    return list(table["tied_with_best"].fillna(False).astype(bool)) if "tied_with_best" in table else [False] * len(table)


def markdown(table: pd.DataFrame, facts: dict, args: argparse.Namespace, warnings_seen: list[str]) -> str:
    lines = [f"# {args.title}", ""]
    if args.command:
        lines += ["Made by:", "", "```bash", args.command, "```", ""]
    if args.task == "generation":
        lines += ["Mean ± 95 % Student-t interval over n seeds. UA: % of images generated for the forgotten class "
                  "that the evaluation classifier does not classify as it (higher = forgotten); acc_retained: % of "
                  "generated retained-class images classified as their class; FD: Fréchet distance to real "
                  "retained-class images in the classifier's feature space (lower = closer); UA_dimra: UA after the "
                  "DiMRA relearning attack (lower = the class came back); RTE in seconds (retrain: its training); "
                  "original: the model before unlearning (doing nothing).", ""]
    else:
        lines += [POOL_LEGEND if args.task == "pool" else LEGEND, ""]
    if warnings_seen:
        lines += ["Warnings:", ""] + [f"- {w}" for w in warnings_seen] + [""]
    for keys, part in table.groupby(GROUP, sort=False):
        stats = facts.get(keys, {})
        lines += [f"## {section_title(keys)}", ""]
        if "regime" in stats:
            lines += [regime_text(stats["regime"]), ""]
        if stats.get("pool_size"):
            lines += [f"Pool size N = {stats['pool_size']}; n = {stats['n_seeds']} forget set(s).", ""]
        shown = (pool_pretty if args.task == "pool" else pretty)(part.reset_index(drop=True))
        bold = bold_rows(part)
        shown["method"] = [f"**{m}**" if b else m for m, b in zip(shown["method"], bold)]
        lines += [shown.to_markdown(index=False), ""]
        if FLOOR not in set(part["method"]):
            lines += [NO_FLOOR + (" `generation.floor=true` gives a generation cell one." if args.task == "generation"
                                  else ""), ""]
        if args.task == "pool":
            lines += [pool_summary(stats), ""]
        elif "margin" in stats:  # a classification setting with an Avg Gap
            lines += [setting_text(stats, part), ""]
    return "\n".join(lines)


NO_FLOOR = ("**No retrain-floor row:** these records carry no second retrained model, so no difference in this "
            "table can be set against the noise of retraining itself.")
LEGEND = ("Lower Avg Gap is better. Every value is the mean ± the half-width of the 95 % Student-t interval over "
          "the n seeds (a seed draws the forget set, trains the reference models and runs the method); a value "
          "without ± rests on one seed and has no interval. Avg Gap = mean |metric − retrain| over UA, RA, TA, MIA, "
          "by two estimators: **per-seed** (the gap of each seed, then the mean; ranks and tests use it) and "
          "**gap of means** (each metric averaged over seeds first, the papers' estimator). Reference rows: "
          "`retrain` (the reference), `retrain floor` (a second retrain model on the same D_r with another training "
          "seed: the gap between two retrains is the noise of retraining), `original` (doing nothing). "
          "Families of comparisons, each corrected by Holm's step-down method over the setting's methods: "
          + "; ".join(FAMILIES) + ". Every test is paired over seeds on the per-seed Avg Gap, at α = "
          f"{verdict.ALPHA}. *vs retrain floor* and *vs doing nothing*: *below* / *above* (the difference test "
          "rejects), *equivalent* (the two one-sided tests reject a difference of δ or more; δ is stated under each "
          "table), or *undecided at n* (neither: the data cannot tell). *Not distinguishable from the best* means "
          "the test could not tell them apart at this n, not that they are equal; the smallest difference it "
          f"could have seen is stated. No best is named from fewer than {MIN_SEEDS_FOR_BEST} seeds, nor where the "
          "lowest gap is not below doing nothing. *k of n runs diverged (kept in the mean)*: runs whose loss became "
          "non-finite, scored as they stopped. RTE in seconds; relearn_FA = forget accuracy after the relearning "
          "attack; MIA_latent (where present) = the published ManiF-SMC attack, an MLP probe on the latent fitted "
          "on the original model (share of D_f called non-member).")
