"""The statistics of one setting scored against pools of models (docs/pools.md): every score with its interval,
the paired tests against the held-out retrain pool and doing nothing, and the table's legend."""

from __future__ import annotations

import math

import pandas as pd

from unlearn_bench import verdict
from unlearn_bench.report.comparisons import MIN_SEEDS_FOR_BEST, outcome, reference_family, tests_against_best
from unlearn_bench.report.formatting import cell
from unlearn_bench.report.records import FLOOR, ORIGINAL, POOL_METRICS, RETRAIN

POOL_LABELS = {RETRAIN: "retrain pool", FLOOR: "held-out retrain pool", ORIGINAL: "original (do nothing)"}
POOL_SHOWN = {"forgetting_quality": "F (ε-score)", "final_score": "final score", "klom_forget": "KLoM D_f",
              "klom_retain": "KLoM D_r", "klom_test": "KLoM T", "klom_forget_p95": "KLoM D_f p95",
              "lira_auc": "LiRA AUC", "lira_tpr_at_1fpr": "TPR @ 1 % FPR", "UA": "UA", "RA": "RA", "TA": "TA",
              "avg_gap": "Avg Gap (pool means)", "RTE": "RTE"}


def pool_differences(a: pd.DataFrame, b: pd.DataFrame) -> tuple[list[float], str]:
    """Paired differences a − b of the final score: one per forget-set seed both rows have when there are two or
    more, else one per forget example of their one shared forget set (its per-example final points)."""
    seeds = sorted(set(a["seed"]) & set(b["seed"]))
    if len(seeds) >= 2:
        x, y = (g.set_index("seed").loc[seeds, "final_score"].astype(float).to_numpy() for g in (a, b))
        return list(x - y), "seeds"
    if len(seeds) == 1:
        x, y = (g.set_index("seed").loc[seeds[0], "final_points"] for g in (a, b))
        if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
            return [float(u) - float(v) for u, v in zip(x, y)], "examples"
    return [], ""


def pool_margin(table: pd.DataFrame) -> float:
    """δ, the equivalence margin of a pool table's final score: half the distance between the held-out retrain
    pool and doing nothing. Within δ of doing nothing, a method is nearer doing nothing than a second retrain
    pool; within δ of the held-out pool, nearer that pool than doing nothing. NaN without both rows."""
    means = table.set_index("method")["final_score_mean"] if "final_score_mean" in table else pd.Series(dtype=float)
    if FLOOR not in means or ORIGINAL not in means:
        return math.nan
    return float(abs(means[FLOOR] - means[ORIGINAL]) / 2)


def against_pool_reference(table: pd.DataFrame, rows: list[int], by_method: dict, reference: str, margin: float,
                           column: str, stats: dict) -> None:
    """One family: every row against a reference row on the final score, the difference test and the two
    one-sided tests against δ, each Holm-corrected over the rows; writes the three-outcome `column`."""
    found = [pool_differences(by_method[table.loc[i, "method"]], by_method[reference]) for i in rows]
    stats["tests"].update(over for _, over in found if over)
    finite = [d if all(math.isfinite(x) for x in d) else [] for d, _ in found]  # a non-finite score tests nothing
    tested, adjusted, tost_adjusted = reference_family(finite, margin)
    for i, (_, over), t, p_adj, t_adj in zip(rows, found, tested, adjusted, tost_adjusted):
        result = outcome(p_adj, t_adj, t["mean"], t["n"], "below", "above") if over else "untested"
        if over == "examples" and result.startswith("undecided"):
            result = f"undecided over the {t['n']} examples of one forget set"
        table.loc[i, [f"{column}_p_adj", f"{column}_tost_adj", column]] = [p_adj, t_adj, result]


def score_interval(rows: pd.DataFrame, metric: str) -> tuple[float, float]:
    """Mean and 95 % t half-width of a row's score over its forget sets; with one forget set, F's interval over
    that set's examples (the record's forgetting_quality_ci)."""
    mean, half, n = verdict.t_interval(rows[metric].dropna().astype(float).tolist())
    if n == 1 and metric == "forgetting_quality" and rows["forgetting_quality_ci"].notna().any():
        half = float(rows["forgetting_quality_ci"].dropna().iloc[0])
    return mean, half


def tau_over_forget_sets(by_method: dict[str, pd.DataFrame], methods: list[str]) -> dict:
    """Kendall τ (τ-b) between the final-score ranking and the Avg Gap ranking of the methods, forget set by forget
    set, over the methods scored on every forget set of the setting: its mean with a 95 % t-interval over the sets, and how
    many methods share the lowest final score on some set (3 decimals, as shown): τ cannot order those, so a
    τ built mostly from them says little. Empty with fewer than 3 shared forget sets or methods."""
    from scipy import stats as scipy_stats

    frames = {m: by_method[m].dropna(subset=["final_score", "avg_gap"]).set_index("seed") for m in methods}
    seeds = sorted(set().union(*(set(f.index) for f in frames.values())))
    frames = {m: f for m, f in frames.items() if set(seeds) <= set(f.index)}  # the methods scored on every set
    if len(seeds) < MIN_SEEDS_FOR_BEST or len(frames) < 3:
        return {}
    taus, tied = [], set()
    for seed in seeds:
        score = pd.Series({m: float(f.loc[seed, "final_score"]) for m, f in frames.items()})
        gap = pd.Series({m: float(f.loc[seed, "avg_gap"]) for m, f in frames.items()})
        taus.append(float(scipy_stats.kendalltau(score, -gap).statistic))
        shown = score.round(3)
        lowest = shown[shown == shown.min()]
        if len(lowest) > 1:
            tied.update(lowest.index)
    mean, half, n = verdict.t_interval(taus)
    return {"mean": mean, "half": half, "n": n, "methods": len(frames), "tied_lowest": sorted(tied)}


def pool_statistics(part: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """One pool setting: mean ± 95 % interval of every score (t over forget-set seeds; with one seed, F's
    interval over the forget examples), the best method by final score, paired tests against it, against
    the held-out retrain pool and against doing nothing, and how the Avg Gap would rank the same methods."""
    from scipy import stats as scipy_stats

    rows, by_method = [], {m: g for m, g in part.groupby("method", sort=False)}
    for method, g in by_method.items():
        row = {"method": method, "n": g["seed"].nunique(), "diverged": int(g["diverged"].sum()),
               "reference": bool(g["reference"].iloc[0])}
        for metric in [*POOL_METRICS, "UA", "RA", "TA", "MIA", "avg_gap", "RTE"]:
            if metric in g and g[metric].notna().any():
                mean, half = score_interval(g, metric)
                row.update({f"{metric}_mean": mean, f"{metric}_ci": half})
        rows.append(row)
    table = pd.DataFrame(rows)
    stats = {"best": None, "tests": set(), "tau_gap": math.nan, "disagreements": [], "margin": pool_margin(table),
             "detectable": (math.nan, math.nan), "family": 0}
    methods = table[~table["reference"]].dropna(subset=["final_score_mean"])
    table["p_vs_best"], table["p_vs_best_adj"], table["detectable_vs_best"] = math.nan, math.nan, math.nan
    table["tied_with_best"], table["marks"], table["vs_floor"], table["vs_nothing"] = False, "", "", ""
    if not methods.empty:
        best = methods.sort_values("final_score_mean", ascending=False).iloc[0]["method"]
        best_i = table.index[table["method"] == best][0]
        marks = {i: [] for i in table.index}
        if table.loc[best_i, "n"] < MIN_SEEDS_FOR_BEST:  # a best from one or two forget sets is not named
            best_i = None
            stats["no_best"] = (f"{int(table.loc[table['method'] == best, 'n'].iloc[0])} forget set(s), fewer than "
                                f"{MIN_SEEDS_FOR_BEST}: no best is named (highest final score here: {best})")
        else:
            stats["best"] = best
            others = [i for i in table.index if table.loc[i, "method"] not in (RETRAIN, best)]
            found = [pool_differences(by_method[table.loc[i, "method"]], by_method[best]) for i in others]
            stats["tests"].update(over for _, over in found if over)
            tested = [verdict.paired_difference(d) for d, _ in found]
            adjusted, stats["family"], seen_by_row = tests_against_best(tested)
            seen_all = []
            for i, t, p_adj, seen in zip(others, tested, adjusted, seen_by_row):
                table.loc[i, ["p_vs_best", "p_vs_best_adj", "detectable_vs_best"]] = [t["p"], p_adj, seen]
                if not table.loc[i, "reference"] and math.isfinite(seen):
                    seen_all.append(seen)
                if not p_adj < verdict.ALPHA and not table.loc[i, "reference"]:
                    table.loc[i, "tied_with_best"] = True
                    marks[i].append("not distinguishable from the best")
            table.loc[best_i, "tied_with_best"] = True
            marks[best_i].append("best")
            if seen_all:
                stats["detectable"] = (min(seen_all), max(seen_all))
        candidates = list(methods.index)
        if FLOOR in by_method:
            against_pool_reference(table, candidates, by_method, FLOOR, stats["margin"], "vs_floor", stats)
        if ORIGINAL in by_method:
            against_pool_reference(table, candidates, by_method, ORIGINAL, stats["margin"], "vs_nothing", stats)
        for i, found in marks.items():
            table.loc[i, "marks"] = "; ".join(m for m in found if m)
        if len(methods) >= 2 and "avg_gap_mean" in methods:
            by_score = methods.set_index("method")["final_score_mean"]
            by_gap = methods.set_index("method")["avg_gap_mean"]
            stats["tau_gap"] = float(scipy_stats.kendalltau(by_score, -by_gap).statistic)
            stats["tau_sets"] = tau_over_forget_sets(by_method, list(by_score.index))
            names = list(by_score.index)
            stats["disagreements"] = [
                (a, b) for j, a in enumerate(names) for b in names[j + 1:]
                if (by_score[a] - by_score[b]) * (by_gap[b] - by_gap[a]) < 0]
    order = {RETRAIN: 0, FLOOR: 1, ORIGINAL: 3}
    table["rank"] = [order.get(m, 2) for m in table["method"]]
    table = table.sort_values(["rank", "final_score_mean"], ascending=[True, False]).reset_index(drop=True)
    table["rank"] = range(len(table))
    return table, stats


def pool_pretty(table: pd.DataFrame) -> pd.DataFrame:
    shown = pd.DataFrame({"method": [POOL_LABELS.get(m, m) for m in table["method"]], "n": table["n"]})
    for metric, label in POOL_SHOWN.items():
        if f"{metric}_mean" in table:
            digits = 1 if metric in ("UA", "RA", "TA", "RTE") else 3
            shown[label] = [cell(a, b, digits) for a, b in zip(table[f"{metric}_mean"], table[f"{metric}_ci"])]
    shown["p vs best (Holm)"] = ["" if pd.isna(p) else f"{p:.3f}" for p in table["p_vs_best_adj"]]
    for column, label in (("vs_floor", "vs held-out retrain pool"), ("vs_nothing", "vs doing nothing")):
        if column in table:
            shown[label] = table[column].fillna("")
    shown["marks"] = table["marks"].fillna("")
    if table["diverged"].any():
        shown["diverged"] = table["diverged"]
    return shown


def pool_summary(stats: dict) -> str:
    """The verdict lines under a pool table: the best, what the ties were tested on, and where the pool
    scores and the Avg Gap rank the methods differently."""
    described = {"seeds": "a paired two-sided t-test of the final score over the forget-set seeds two rows share",
                 "examples": "where two rows share one forget set only, a paired two-sided t-test of the per-example "
                             "final points over its examples (optimistic: the examples share the pool's N models, "
                             "so they are not independent draws)"}
    test = "; ".join(described[t] for t in sorted(stats["tests"]) if t in described) or "no test"
    if stats.get("best"):
        text = (f"Best by final score: **{stats['best']}**; bold: the best and the methods not distinguishable from "
                f"it ({test}; Holm-adjusted within each family, α = {verdict.ALPHA}; not distinguishable is not equal).")
    elif stats.get("no_best"):
        text = f"No best: {stats['no_best']}. Tests against the references: {test} (Holm-adjusted, α = {verdict.ALPHA})."
    else:
        return ""
    low, high = stats.get("detectable", (math.nan, math.nan))
    if math.isfinite(low):
        text += (f" The Holm-corrected tests against the best detect a paired final-score difference of {low:.3f}–"
                 f"{high:.3f} with power 0.8 (α = {verdict.ALPHA} / {stats['family']}, from each pair's observed spread "
                 "over the forget sets); a smaller one could go unseen.")
    if math.isfinite(stats.get("margin", math.nan)):
        text += (f" δ (equivalence margin against the held-out retrain pool and doing nothing) = half the distance "
                 f"between their final scores, {stats['margin']:.3f}: a method equivalent to doing nothing is nearer it "
                 "than a second retrain pool.")
    if not pd.isna(stats["tau_gap"]):
        pairs = ", ".join(f"{a} / {b}" for a, b in stats["disagreements"]) or "none"
        text += (f" Ranking by final score vs by the Avg Gap of the pool means (lower is better): Kendall τ = "
                 f"{stats['tau_gap']:.2f}; pairs ordered differently: {pairs}.")
    sets = stats.get("tau_sets") or {}
    if sets:
        text += (f" Forget set by forget set ({sets['n']} sets, the {sets['methods']} methods scored on all): τ = "
                 f"{sets['mean']:.2f} ± {sets['half']:.2f} (95 % t-interval over the sets).")
        if sets["tied_lowest"]:
            text += (f" {len(sets['tied_lowest'])} of the {sets['methods']} methods ("
                     f"{', '.join(sets['tied_lowest'])}) share the lowest final score on some forget set: no "
                     "ranking orders them, and the more of the rows they are, the less τ says.")
    return text


POOL_LEGEND = ("Scores against pools of models (docs/pools.md): per forget set, N retrain models (training seeds 0..N−1 "
               "on D_r) and N seeded runs of each method from the one original model. **F** = the NeurIPS 2023 "
               "challenge's forgetting quality (per forget example, ε of the best decision rule telling the method's "
               "pool from the retrain pool, bucketed into 2^−n points; 1 = indistinguishable, 0 = always told apart); "
               "**final score** = F × (RA_u / RA_r) × (TA_u / TA_r), higher is better; **KLoM** = per-example KL "
               "divergence KL(retrain ‖ method) of the margin distributions (mean over D_f, a D_r sample and T; p95 "
               "over D_f; 20 bins, the last one closed unless eval.klom_top_edge=reference; the other direction with "
               "eval.klom_direction=unlearned_first), lower is better; **LiRA AUC / TPR @ 1 % FPR** = a per-example likelihood-ratio attack telling the method's "
               "models from retrained ones (0.5 / 0.01 = indistinguishable). Reference rows: the retrain pool, a "
               "held-out retrain pool scored as if it were a method (the best a method can reach with N models; "
               "KLoM's floor at this N) and doing nothing (the original N times: F = 0). Mean ± 95 % interval: Student "
               "t over the n forget-set seeds; with n = 1, F's interval is over the forget examples and the others "
               "have none. Families, each Holm-corrected over the setting's rows: every row against the best (two-sided "
               "paired t-test of the final score), every method against the held-out retrain pool and every method "
               "against doing nothing (paired t-test and two one-sided tests against δ, stated under each table). "
               "*vs held-out retrain pool* and *vs doing nothing*: *below* / *above* (the difference test rejects), "
               "*equivalent* (the two one-sided tests reject a difference of δ or more) or *undecided* (neither: the "
               "data cannot tell); α = 0.05. *Not distinguishable from the best* is not equal.")

