"""The augmentation study's answer, from its records: does a data augmentation pipeline bring a method's
unlearning closer to retraining, or does it only make the original memorise less?

Per method and forget rate, each pipeline is compared with a baseline pipeline (`default`, crop + flip, the
papers' reference; and `none`) seed by seed:
- the per-seed relative change of the Avg Gap, 100 (g_pipeline − g_baseline) / g_baseline, with its 95 %
  t-interval (the papers' terms);
- the paired difference of the Avg Gap, tested two-sided (Holm-adjusted within the family of every
  method × rate × pipeline against that baseline) and for equivalence (two one-sided tests, margin δ = the
  mean retrain floor of the two pipelines: a difference inside the noise of retraining itself), so each
  comparison is *closer*, *farther*, *equivalent within δ* or *undecided at n*, with the smallest difference
  the n seeds could detect (α 0.05, power 0.8);
- the same for the normalised gap, the method's gap over doing nothing's gap on the same seed: a pipeline
  whose original memorises less has less to forget, and must not look like better unlearning.
Beside them: Kendall τ between two methods' rankings of the pipelines (is the best pipeline the same for
every method?), with a bootstrap interval over seeds, and per method and rate the verdict on the papers'
claim that TrivialAug lowers the Avg Gap against crop + flip, with where the papers' size of the drop (up to
about 40 %) lies against the relative change's interval.

    python -m unlearn_bench.report.augmentation --records results/aug_study/records --out results/aug_study
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from unlearn_bench.errors import ArgumentParser, one_line_errors
from unlearn_bench.report.claim import CLAIMED_CHANGE, relative_change_of_means, untested, verdicts
from unlearn_bench.report.page import html_page
from unlearn_bench.report.records import seed_coverage
from unlearn_bench.report.stats import (
    ALPHA,
    detectable_difference,
    family_alpha,
    family_size,
    holm,
    kendall_interval,
    tost,
)
from unlearn_bench.verdict import MIN_SEEDS, paired_difference, t_interval

PROJECTED_SEEDS = (5, 10)  # the design's seeds and the main table's: the detectable difference projected there
PIPELINES = ("none", "default", "randaugment", "autoaugment", "random_erasing", "trivialaug", "augmix")
REFERENCE_METHODS = ("retrain",)
def rate_label(forget: dict) -> str:
    if forget.get("mode") == "random" and forget.get("rate") is not None:
        return f"random {round(100 * forget['rate'])}%"
    return str(forget.get("mode"))


def load(folder: Path) -> pd.DataFrame:
    """One row per classification record: the method's, doing nothing's and the retrain floor's Avg Gap."""
    rows = []
    for path in sorted(Path(folder).glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("task", "classification") != "classification":
            continue
        config = record["config"]
        over = (config.get("metrics") or {}).get("gap_over") or []
        per_metric = {f"{side}:{name}": float(record[key][name]) for name in over
                      for side, key in (("method", "metrics"), ("retrain", "retrain_metrics"))
                      if name in record.get(key, {})}
        rows.append({**per_metric, "method": record["method"], "augmentation": config["augmentation"]["name"],
                     "rate": rate_label(config["forget_rate"]), "seed": int(config["seed"]),
                     "gap": record["metrics"]["avg_gap"], "nothing": record["original_metrics"]["avg_gap"],
                     "floor": record["retrain2_metrics"]["avg_gap"], "diverged": bool(record.get("diverged")),
                     "meets_bar": bool((record.get("regime") or {}).get("meets_bar")), "record": path.name,
                     **{key: (record.get("regime") or {}).get(f"original_{key}", math.nan)
                        for key in ("forget_acc", "retain_acc", "TA")}})
    if not rows:
        raise SystemExit(f"error: no classification record in {folder}")
    frame = pd.DataFrame(rows)
    duplicated = frame.duplicated(["method", "augmentation", "rate", "seed"], keep=False)
    if duplicated.any():
        names = ", ".join(frame.loc[duplicated, "record"].head(4))
        raise SystemExit(f"error: two records of one cell (method, augmentation, rate, seed) in {folder}: {names}")
    return frame


def regime(frame: pd.DataFrame) -> pd.DataFrame:
    """Per pipeline and rate, means over the seeds: the original's accuracy on D_f, D_r and T, doing nothing's
    gap, the retrain floor and their ratio, and how many seeds meet the regime bar."""
    cells = frame.drop_duplicates(["augmentation", "rate", "seed"])
    table = cells.groupby(["rate", "augmentation"]).agg(
        seeds=("seed", "nunique"), meeting_bar=("meets_bar", "sum"), forget_acc=("forget_acc", "mean"),
        retain_acc=("retain_acc", "mean"), TA=("TA", "mean"), nothing=("nothing", "mean"),
        floor=("floor", "mean")).reset_index()
    # rounded down: a ratio just under the bar of 3 never prints as 3.00
    table["nothing_over_floor"] = np.floor(100 * table["nothing"] / table["floor"]) / 100
    return table


def outcome(row: dict) -> str:
    if row["n"] < MIN_SEEDS:
        return untested(row["n"])
    if row["p_holm"] < ALPHA:
        return "closer" if row["difference"] < 0 else "farther"
    if row["tost_p_holm"] < ALPHA:
        return "equivalent within δ"
    return "undecided at n"


def effects(frame: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Every (method, rate, pipeline) against `baseline`, paired on the seeds both have; Holm within the family."""
    rows = []
    methods = [m for m in frame["method"].unique() if m not in REFERENCE_METHODS]
    for (method, rate), part in frame[frame["method"].isin(methods)].groupby(["method", "rate"]):
        by = {aug: rows_.set_index("seed") for aug, rows_ in part.groupby("augmentation")}
        if baseline not in by:
            continue
        base = by[baseline]
        for aug in [p for p in PIPELINES if p in by and p != baseline]:
            seeds = sorted(set(by[aug].index) & set(base.index))
            if not seeds:
                continue
            mine, theirs = by[aug].loc[seeds], base.loc[seeds]
            diff = (mine["gap"] - theirs["gap"]).to_numpy()
            relative = paired_difference(100 * diff / theirs["gap"].to_numpy())
            raw = paired_difference(diff)
            normalised = paired_difference((mine["gap"] / mine["nothing"] - theirs["gap"] / theirs["nothing"]).to_numpy())
            margin = float(np.mean(np.concatenate([mine["floor"], theirs["floor"]])))
            rows.append({"baseline": baseline, "method": method, "rate": rate, "augmentation": aug, "n": len(seeds),
                         "relative_change": relative["mean"], "relative_half": relative["half"],
                         "relative_change_of_means": relative_change_of_means(frame, method, rate, seeds, aug,
                                                                              baseline),
                         "difference": raw["mean"], "difference_half": raw["half"], "p": raw["p"],
                         "margin": margin, "tost_p": tost(diff, margin),
                         "difference_sd": raw["sd"],
                         "normalised_difference": normalised["mean"], "normalised_half": normalised["half"],
                         "normalised_p": normalised["p"],
                         "diverged": int(mine["diverged"].sum() + theirs["diverged"].sum())})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    for column in ("p", "tost_p", "normalised_p"):
        table[f"{column}_holm"] = holm(table[column].to_numpy())
    alpha = family_alpha(family_size(table["p"]))
    spread = table.pop("difference_sd")
    table.insert(table.columns.get_loc("margin") + 2, "detectable",
                 [detectable_difference(sd, n, alpha) for sd, n in zip(spread, table["n"])])
    for seeds in PROJECTED_SEEDS:  # the same spread at more seeds: how many the question needs
        table[f"detectable_at_{seeds}"] = [detectable_difference(sd, seeds, alpha) for sd in spread]
    table["outcome"] = [outcome(r) for r in table.to_dict("records")]
    table["normalised_outcome"] = [
        untested(r["n"]) if r["n"] < MIN_SEEDS else
        ("lower" if r["normalised_difference"] < 0 else "higher") if r["normalised_p_holm"] < ALPHA else
        "undecided at n"
        for r in table.to_dict("records")]
    return table


def rankings(frame: pd.DataFrame) -> pd.DataFrame:
    """Per rate and pair of methods: Kendall τ between their rankings of the pipelines (mean Avg Gap over the
    seeds every pipeline of both has), with a bootstrap interval over those seeds."""
    rows = []
    methods = sorted(m for m in frame["method"].unique() if m not in REFERENCE_METHODS)
    for rate, part in frame.groupby("rate"):
        pivot = part.pivot_table(index=["method", "seed"], columns="augmentation", values="gap")
        pipelines = [p for p in PIPELINES if p in pivot.columns]
        for a, b in itertools.combinations([m for m in methods if m in pivot.index.get_level_values(0)], 2):
            ga, gb = pivot.loc[a, pipelines].dropna(), pivot.loc[b, pipelines].dropna()
            seeds = np.array(sorted(set(ga.index) & set(gb.index)))
            if len(pipelines) < 3:
                continue

            def means(chosen: np.ndarray, ga=ga, gb=gb) -> tuple[np.ndarray, np.ndarray]:
                return ga.loc[chosen].mean().to_numpy(), gb.loc[chosen].mean().to_numpy()

            tau, low, high = kendall_interval(means, seeds)
            rows.append({"rate": rate, "method_a": a, "method_b": b, "seeds": len(seeds), "pipelines": len(pipelines),
                         "tau": tau, "low": low, "high": high})
    return pd.DataFrame(rows)


def combinations(frame: pd.DataFrame) -> pd.DataFrame:
    """The study's question in one table per rate: which method with which pipeline comes closest to its own
    retrain model? Every (method, pipeline) with its mean per-seed Avg Gap and normalised gap; the best is the
    lowest mean gap among the combinations with at least MIN_SEEDS seeds, named only where it is below its own
    doing nothing (paired, Holm within the rate's family of those tests; the rule of every table's best);
    every other combination is tested against
    it, paired over the seeds both have (one seed draws one forget set for every pipeline), Holm within the
    rate, with the smallest difference each test could detect."""
    from unlearn_bench.report.comparisons import tests_against_best

    rows = []
    methods = frame[~frame["method"].isin(REFERENCE_METHODS)]
    for rate, part in methods.groupby("rate"):
        cells = {key: g.set_index("seed") for key, g in part.groupby(["method", "augmentation"])}
        table = []
        for (method, aug), g in cells.items():
            _, gap_half, _ = t_interval(g["gap"].to_numpy())
            vs_nothing = paired_difference((g["gap"] - g["nothing"]).to_numpy())
            table.append({"rate": rate, "method": method, "augmentation": aug, "n": len(g), "gap": float(g["gap"].mean()),
                          "gap_half": gap_half, "normalised": float((g["gap"] / g["nothing"]).mean()),
                          "below_nothing_p": vs_nothing["p"] if vs_nothing["mean"] < 0 else 1.0})
        table = pd.DataFrame(table)
        table["below_nothing_p_holm"] = holm(table["below_nothing_p"].to_numpy())
        candidates = table[table["n"] >= MIN_SEEDS].sort_values("gap")
        table["best"], table["p_vs_best"], table["p_vs_best_holm"], table["detectable_vs_best"] = False, math.nan, math.nan, math.nan
        table["tied_with_best"], table["lowest"] = False, False
        if not candidates.empty:
            table.loc[candidates.index[0], "lowest"] = True
        if not candidates.empty and candidates["below_nothing_p_holm"].iloc[0] < ALPHA:
            best = candidates.index[0]
            table.loc[best, ["best", "tied_with_best"]] = True
            best_cell = cells[(table.loc[best, "method"], table.loc[best, "augmentation"])]
            others = [i for i in table.index if i != best]
            found = []
            for i in others:
                mine = cells[(table.loc[i, "method"], table.loc[i, "augmentation"])]
                seeds = sorted(set(mine.index) & set(best_cell.index))
                found.append(paired_difference((mine.loc[seeds, "gap"] - best_cell.loc[seeds, "gap"]).to_numpy()))
            adjusted, _, seen = tests_against_best(found)
            for i, f, p_adj, detectable in zip(others, found, adjusted, seen):
                table.loc[i, ["p_vs_best", "p_vs_best_holm", "detectable_vs_best"]] = [f["p"], p_adj, detectable]
                table.loc[i, "tied_with_best"] = bool(f["n"] >= MIN_SEEDS and not p_adj < ALPHA)
        rows.append(table.sort_values("gap"))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def combinations_markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return "No combination yet.\n"
    lines = []
    for rate, part in table.groupby("rate", sort=True):
        best = part[part["best"]]
        lines += [f"### {rate}", ""]
        if best.empty:
            lowest = part[part["lowest"]]
            lines += [(f"No best: the lowest mean gap ({lowest['method'].iloc[0]} with {lowest['augmentation'].iloc[0]}, "
                       f"{lowest['gap'].iloc[0]:.2f}) is not below its own doing nothing after Holm's correction "
                       f"(adjusted p {lowest['below_nothing_p_holm'].iloc[0]:.3f})." if not lowest.empty else
                       f"No best: no combination has {MIN_SEEDS} seeds."), ""]
        else:
            b = best.iloc[0]
            tied = part[part["tied_with_best"] & ~part["best"]]
            seen = part["detectable_vs_best"].dropna()
            lines += [f"Closest to retrain: **{b['method']} with {b['augmentation']}** (Avg Gap {b['gap']:.2f} ± "
                      f"{b['gap_half']:.2f}, n = {int(b['n'])}); not distinguishable from it after Holm's correction "
                      f"over {len(part) - 1} comparisons: "
                      + (", ".join(f"{r['method']} with {r['augmentation']}" for r in tied.to_dict("records")) or "none")
                      + (f" (the corrected tests could miss a difference below {seen.min():.2f}–{seen.max():.2f})"
                         if not seen.empty else "") + ".", ""]
        lines += ["| method | pipeline | n | Avg Gap | normalised gap | below its doing nothing (p, Holm) | p vs best (Holm) |",
                  "|---|---|---|---|---|---|---|"]
        for r in part.to_dict("records"):
            name = f"**{r['method']}**" if r["tied_with_best"] else r["method"]
            lines.append(f"| {name} | {r['augmentation']} | {r['n']} | {number(r['gap'])} ± {number(r['gap_half'])} | "
                         f"{number(r['normalised'], 3)} | {number(r['below_nothing_p_holm'], 3)} | "
                         f"{'best' if r['best'] else number(r['p_vs_best_holm'], 3)} |")
        lines.append("")
    return "\n".join(lines)


def number(value: float, digits: int = 2) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def effects_markdown(table: pd.DataFrame, baseline: str) -> str:
    if table.empty:
        return f"No pipeline shares seeds with `{baseline}` yet.\n"
    lines = [f"Family: every method × rate × pipeline against `{baseline}` ({len(table)} comparisons); p-values "
             "Holm-adjusted within it. δ = the two pipelines' mean retrain floor. *detectable*: the smallest "
             f"paired difference the corrected test detects with power 0.8 at its n (α = {ALPHA} / {family_size(table['p'])}, "
             "the level Holm's procedure rejects at in any step; from the pair's observed spread).", "",
             "| method | rate | pipeline | n | Δ Avg Gap % (95 % CI) | Δ Avg Gap | p (Holm) | δ | detectable | outcome "
             "| Δ normalised gap | p (Holm) |", "|" + "---|" * 12]
    for r in table.sort_values(["rate", "method", "augmentation"]).to_dict("records"):
        lines.append(f"| {r['method']} | {r['rate']} | {r['augmentation']} | {r['n']} | "
                     f"{number(r['relative_change'], 1)} ± {number(r['relative_half'], 1)} | "
                     f"{number(r['difference'])} ± {number(r['difference_half'])} | {number(r['p_holm'], 3)} | "
                     f"{number(r['margin'])} | {number(r['detectable'])} | {r['outcome']} | "
                     f"{number(r['normalised_difference'], 3)} ± {number(r['normalised_half'], 3)} | "
                     f"{number(r['normalised_p_holm'], 3)} |")
    return "\n".join(lines) + "\n"


def complete_seeds(frame: pd.DataFrame) -> tuple[list[int], dict[int, str]]:
    """The seeds whose grid is complete (a record for every method × pipeline × rate the records hold at any
    seed) and, for the others, how much of it they have. A grid that runs seed by seed has one partial seed
    at a time; comparing on it would test some pairs at n + 1 and the rest at n, inside one family."""
    coverage = seed_coverage(frame, ["method", "augmentation", "rate"])
    complete = [seed for seed, (have, total) in coverage.items() if have == total]
    partial = {seed: f"{have} of its {total} cells, retrain included"
               for seed, (have, total) in coverage.items() if have != total}
    return complete, partial


def write(frame: pd.DataFrame, out: Path, partial_seeds: bool = False) -> str:
    """The report. The regime table reads every record; the comparisons read the complete seeds only, unless
    `partial_seeds`, so that every comparison of a family rests on the same seeds."""
    out.mkdir(parents=True, exist_ok=True)
    bar = regime(frame)
    complete, partial = complete_seeds(frame)
    compared = frame if partial_seeds else frame[frame["seed"].isin(complete)]
    tables = {baseline: effects(compared, baseline) for baseline in ("default", "none")}
    ranks = rankings(compared)
    claim = verdicts(tables["default"])
    closest = combinations(compared)
    bar.to_csv(out / "regime.csv", index=False)
    closest.to_csv(out / "combinations.csv", index=False)
    if not closest.empty:
        from unlearn_bench.report.plots import plot_combinations

        plot_combinations(closest, out / "combinations.png", "Which method, with which pipeline, comes closest to "
                          "retraining?", PIPELINES)
    pd.concat(tables.values(), ignore_index=True).to_csv(out / "pipeline_effects.csv", index=False)
    ranks.to_csv(out / "pipeline_rankings.csv", index=False)
    claim.to_csv(out / "verdicts.csv", index=False)
    misses = bar[bar["meeting_bar"] < bar["seeds"]]
    text = ["# Augmentation study: pipeline effects", "",
            "Generated by `python -m unlearn_bench.report.augmentation` from the records; every number is in the CSVs "
            "beside this file.", "", "## Regime (per pipeline and rate)", "",
            bar.to_markdown(index=False, floatfmt=".2f"), "",
            ("Every cell meets the regime bar." if misses.empty else
             "**Warning:** cells that miss the regime bar: " + ", ".join(
                 f"{r['augmentation']} at {r['rate']} ({r['seeds'] - r['meeting_bar']} of {r['seeds']})"
                 for r in misses.to_dict("records"))), ""]
    used = sorted(set(compared["seed"]))
    text += [f"Seeds compared below: {', '.join(map(str, used)) or 'none'}"
             + ("" if partial_seeds or not partial else
                "; left out until their grid is complete (`--partial-seeds` compares them too): "
                + ", ".join(f"{seed} ({have})" for seed, have in partial.items())) + ".", ""]
    text += ["## Which method, with which pipeline, comes closest to retraining?", "",
             "Every method × pipeline of a rate, its mean per-seed Avg Gap to its own pipeline's retrain model (± 95 % "
             "t half-width) and normalised gap (over its doing nothing). The best is the lowest mean gap among the "
             f"combinations with {MIN_SEEDS} or more seeds, named only where it is below its own doing nothing "
             "(paired, Holm over the rate's combinations); every other combination is tested against it, paired over the seeds both "
             "have (a seed draws one forget set for every pipeline), Holm over the rate's combinations; bold: the "
             "best and the combinations not distinguishable from it (not distinguishable is not equal).", "",
             combinations_markdown(closest), *(["![method x pipeline](combinations.png)", ""] if not closest.empty else [])]
    for baseline, table in tables.items():
        text += [f"## Against `{baseline}`", "", effects_markdown(table, baseline)]
    text += ["## Is the best pipeline the same for every method?", "",
             "Kendall τ between two methods' rankings of the pipelines (mean Avg Gap), 95 % bootstrap interval over "
             "seeds; none from fewer than 3 seeds.", "",
             ranks.to_markdown(index=False, floatfmt=".2f") if not ranks.empty else "No pair of methods yet.", "",
             "## The papers' claim: TrivialAug closer to retrain than crop + flip", "",
             f"*papers_size*: where the papers' largest reported drop ({CLAIMED_CHANGE:.0f} % of crop + flip's Avg Gap) "
             "lies against the 95 % interval of the relative change: the verdict is on the direction, this column on "
             "the size. *relative_change_of_means*: the same change with the papers' estimator (each metric averaged "
             "over the seeds first, then the gap), a point estimate.", "",
             claim.to_markdown(index=False, floatfmt=".1f") if not claim.empty else "No TrivialAug row yet.", ""]
    markdown = "\n".join(text)
    (out / "pipeline_effects.md").write_text(markdown)
    (out / "pipeline_effects.html").write_text(html_page(markdown, "Augmentation study: pipeline effects"))
    return markdown


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=Path, required=True, help="folder of the study's JSON records")
    parser.add_argument("--out", type=Path, required=True, help="folder for pipeline_effects.md / .html and the CSVs")
    parser.add_argument("--partial-seeds", action="store_true",
                        help="compare on seeds whose grid is not complete too (by default they are left out)")
    args = parser.parse_args(argv)
    if not args.records.is_dir():
        print(f"error: --records={str(args.records)!r} is not a folder; accepted: a folder of JSON records",
              file=sys.stderr)
        return 2
    try:
        print(write(load(args.records), args.out, args.partial_seeds))
    except SystemExit as err:
        print(err, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
