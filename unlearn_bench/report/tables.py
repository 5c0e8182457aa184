"""The leaderboard table over every setting, and the agreement of method rankings between a dataset's forget
settings (Kendall τ with a bootstrap interval over seeds)."""

from __future__ import annotations

import json
import math

import pandas as pd

from unlearn_bench import verdict
from unlearn_bench.report.formatting import number
from unlearn_bench.report.pools import pool_statistics
from unlearn_bench.report.records import (
    AUG_ORDER,
    GROUP,
    differing,
    forget_order,
    reference_first,
)
from unlearn_bench.report.settings import (
    gaps_by_seed,
    regime_summary,
    setting_statistics,
)


def setting_key(keys: tuple) -> tuple:
    dataset, model, forget, augmentation, variant = keys
    aug = AUG_ORDER.index(augmentation) if augmentation in AUG_ORDER else len(AUG_ORDER)
    return dataset, model, forget_order(forget), aug, augmentation, variant


def aggregate(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The leaderboard table (one row per configuration, settings in numeric order) and per-setting facts."""
    tables, facts = [], {}
    groups = sorted(frame.groupby(GROUP, sort=False), key=lambda kv: setting_key(kv[0]))
    pools = not frame.empty and (frame["task"] == "pool").all()
    for keys, part in groups:
        table, stats = pool_statistics(part) if pools else setting_statistics(part)
        for column, value in zip(GROUP, keys):
            table.insert(GROUP.index(column), column, value)
        tables.append(table)
        if "avg_gap_mean" in table and not pools:
            stats["regime"] = regime_summary(part)
        stats["n_seeds"] = int(part["seed"].nunique())
        if pools:
            stats["pool_size"] = json.loads(part["setting_sig"].iloc[0]).get("eval.pool_size")
        facts[keys] = stats
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    if "avg_gap_mean" not in table:  # generation: no gap to rank by; references first, then methods
        table["order"] = [reference_first(m) for m in table["method"]]
        table = table.sort_values([*GROUP, "order", "method"]).drop(columns="order").reset_index(drop=True)
    return table, facts


def shared_labels(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, str]:
    """Labels of setting b to read as setting a's: where b holds several configurations of a method (each
    labelled by the keys that differ, `ga (bn=train)`) and a holds one (`ga`), the configuration of b
    with a's values of those keys is the same method as a's row."""
    rename = {}
    plain = {base: json.loads(g["method_sig"].iloc[0]) for base, g in a.groupby("method_base")
             if set(g["method"]) == {base}}
    for base, g in b.groupby("method_base"):
        configs = {label: json.loads(rows["method_sig"].iloc[0]) for label, rows in g.groupby("method")}
        if base not in plain or len(configs) < 2:
            continue
        keys = differing(list(configs.values()))
        for label, config in configs.items():
            if all(config.get(k) == plain[base].get(k) for k in keys):
                rename[label] = base
    return rename


def rank_agreement(frame: pd.DataFrame, facts: dict) -> pd.DataFrame:
    """Per dataset / model / augmentation / variant, every pair of its forget settings: Kendall τ between
    their method rankings (mean per-seed Avg Gap; reference rows out) with its 95 % bootstrap interval over
    seeds, beside each setting's τ between two halves of its own seeds (the noise a change must exceed)."""
    rows = []
    within = ["dataset", "model", "augmentation", "variant"]
    for keys, group in frame[~frame["reference"]].dropna(subset=["avg_gap"]).groupby(within, sort=False):
        settings = sorted(group["forget"].unique(), key=forget_order)
        rows_of = {f: group[group["forget"] == f] for f in settings}
        for i, first in enumerate(settings):
            for second in settings[i + 1:]:
                a, b = rows_of[first], rows_of[second]
                found = verdict.kendall_settings(gaps_by_seed(a, shared_labels(b, a)),
                                                 gaps_by_seed(b, shared_labels(a, b)))
                halves = [facts.get((keys[0], keys[1], f, keys[2], keys[3]), {}).get("tau", math.nan)
                          for f in (first, second)]
                rows.append({**dict(zip(within, keys)), "setting_a": first, "setting_b": second,
                             "tau": found["tau"], "tau_low": found["low"], "tau_high": found["high"],
                             "methods": found["methods"], "seeds": found["seeds"],
                             "tau_halves_a": halves[0], "tau_halves_b": halves[1],
                             "left_out": ", ".join(found["left_out"])})
    return pd.DataFrame(rows)


def agreement_markdown(agreement: pd.DataFrame) -> str:
    shown = pd.DataFrame({
        "setting": [" / ".join(map(str, (r.dataset, r.model, r.augmentation, *((r.variant,) if r.variant else ()))))
                    for r in agreement.itertuples()],
        "forget A": agreement["setting_a"], "forget B": agreement["setting_b"],
        "τ (A vs B)": [number(t) for t in agreement["tau"]],
        "95 % interval": [f"[{number(lo)}, {number(hi)}]"
                          for lo, hi in zip(agreement["tau_low"], agreement["tau_high"])],
        "methods": agreement["methods"], "seeds": agreement["seeds"],
        "τ halves A": [number(t) for t in agreement["tau_halves_a"]],
        "τ halves B": [number(t) for t in agreement["tau_halves_b"]],
        "left out": agreement["left_out"]})
    return "\n".join([
        "", "## Ranking across forget settings", "",
        "Kendall τ between the method rankings (mean per-seed Avg Gap, reference rows out) of two forget settings, "
        "over the methods both have and the seeds they share, with a 95 % BCa bootstrap interval over seeds "
        "(scipy.stats.bootstrap, 2,000 resamples; a seed is resampled in both settings at once, since it draws "
        "the same original model there; rough with few seeds). 1 = the same order, 0 = unrelated, −1 = "
        "reversed. τ halves: each setting's τ between two halves of its own seeds, the agreement that seed "
        "noise alone leaves (rankings on half the seeds each, so noisier than the rankings compared here).", "",
        shown.to_markdown(index=False), ""])

