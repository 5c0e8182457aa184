"""Configurations of one method against each other (a switch, a hyperparameter): where a setting holds several
rows of one method (`unsir (noise_bn=eval)`, `unsir (noise_bn=train)`), the paired per-seed difference of
every pair, read with the same three outcomes as the table's reference comparisons."""

from __future__ import annotations

import itertools
import math

import pandas as pd

from unlearn_bench.report.comparisons import outcome
from unlearn_bench.report.formatting import cell, number, p_text, section_title
from unlearn_bench.report.records import GROUP
from unlearn_bench.report.settings import rows_difference
from unlearn_bench.report.stats import detectable_difference, family_alpha, family_size, holm, tost
from unlearn_bench.verdict import ALPHA


def configuration_comparison(frame: pd.DataFrame, facts: dict) -> pd.DataFrame:
    """Per setting, every pair of configurations of one method (labels in alphabetical order, first − second):
    n, both mean gaps on the shared seeds, the mean difference with its 95 % t-interval, p of the paired
    t-test, the two one-sided tests within the setting's δ (the retrain floor's mean gap), both Holm-adjusted
    over the setting's pairs, the smallest difference the corrected test detects (α / the pairs, power 0.8, observed spread)
    and the outcome. Empty when no setting holds two configurations of a method."""
    out = []
    methods = frame[~frame["reference"]].dropna(subset=["avg_gap"])
    for keys, part in methods.groupby(GROUP, sort=False):
        margin = facts.get(keys, {}).get("margin", math.nan)
        rows = []
        for base, group in part.groupby("method_base", sort=False):
            labels = sorted(set(group["method"]))
            for first, second in itertools.combinations(labels, 2):
                found = rows_difference(group[group["method"] == first], group[group["method"] == second])
                rows.append({**dict(zip(GROUP, keys)), "method": base, "first": first, "second": second,
                             "n": found["n"], "first_gap": found["a_gap"], "second_gap": found["b_gap"],
                             "difference": found["difference"], "difference_ci": found["difference_ci"],
                             "p": found["p"], "tost": tost(found["differences"], margin), "margin": margin,
                             "sd": found["sd"]})
        if rows:
            table = pd.DataFrame(rows)
            table["p_holm"], table["tost_holm"] = holm(table["p"].to_numpy()), holm(table["tost"].to_numpy())
            alpha = family_alpha(family_size(table["p"]))
            table.insert(table.columns.get_loc("sd"), "detectable",
                         [detectable_difference(sd, n, alpha) for sd, n in zip(table.pop("sd"), table["n"])])
            table["outcome"] = [outcome(r.p_holm, r.tost_holm, r.difference, r.n, f"{r.first} closer",
                                        f"{r.second} closer")
                                for r in table.itertuples()]
            out.append(table)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def configuration_markdown(pairs: pd.DataFrame) -> str:
    shown = pd.DataFrame({
        "setting": [section_title(keys) for keys in pairs[GROUP].itertuples(index=False)],
        "first": pairs["first"], "second": pairs["second"], "n": pairs["n"],
        "first's gap": [number(v) for v in pairs["first_gap"]], "second's gap": [number(v) for v in pairs["second_gap"]],
        "first − second": [cell(m, h) for m, h in zip(pairs["difference"], pairs["difference_ci"])],
        "p (Holm)": [p_text(p) for p in pairs["p_holm"]], "δ": [number(v) for v in pairs["margin"]],
        "TOST p (Holm)": [p_text(p) for p in pairs["tost_holm"]],
        "detectable": [number(v) for v in pairs["detectable"]], "outcome": pairs["outcome"]})
    return "\n".join([
        "", "## Configurations of one method", "",
        "Where a setting holds several configurations of one method: per pair, the mean per-seed Avg Gap of each on "
        "the seeds both have and their paired difference (mean ± 95 % t-interval; negative = the first is closer "
        "to retrain), the paired two-sided t-test and the two one-sided tests of a difference within δ (the "
        "setting's retrain floor mean gap); family: every pair of a setting, each test Holm-adjusted. Outcome "
        f"at adjusted p < {ALPHA}: *X closer* (X the configuration closer to retrain), *equivalent* (within δ), or *undecided at "
        "n* (neither); *detectable*: the smallest difference the corrected t-test finds with power 0.8 at this n "
        f"and the observed spread (α = {ALPHA} / the setting's pairs: the level Holm's procedure rejects at in any "
        "step).", "",
        shown.to_markdown(index=False), ""])
