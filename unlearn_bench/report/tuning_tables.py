"""Tuned rows beside default rows (docs/tuning.md): per method and track the paired per-seed difference
tuned − default, Kendall τ between the zoo's rankings, and the two tracks against each other."""

from __future__ import annotations

import math
import re

import pandas as pd

from unlearn_bench import verdict
from unlearn_bench.report.comparisons import paired
from unlearn_bench.report.formatting import cell, number, p_text, section_title
from unlearn_bench.report.records import GROUP
from unlearn_bench.report.settings import gaps_by_seed, rows_difference
from unlearn_bench.report.stats import holm

TUNED_LABEL = re.compile(r"^(?P<base>.+) \(tuned, (?P<track>[a-z]+)\)$")  # the label unlearn-bench-tune writes


def relabelled(rows: pd.DataFrame, base: str) -> dict[str, dict[int, float]]:
    """A tuned row's per-seed gaps under its method's name, so its ranking lines up with the default's or
    with the other track's."""
    return gaps_by_seed(rows, {rows["method"].iloc[0]: base})


def difference_verdict(p: float, difference: float, closer: str, farther: str) -> str:
    """A paired difference's verdict at α: `closer` when negative and significant, `farther` when positive."""
    if pd.isna(p) or p >= verdict.ALPHA:
        return "no difference"
    return closer if difference < 0 else farther


def track_best(rows: dict[str, pd.DataFrame], labels: list[str]) -> tuple[str, list[str]]:
    """Among one track's tuned rows: the lowest mean per-seed Avg Gap and the rows not distinguishable from it
    (paired two-sided t-tests, Holm over the track's other rows, adjusted p ≥ α), so a track's own verdict does
    not hinge on the other track's best row."""
    if not labels:
        return "", []
    best = min(labels, key=lambda label: rows[label]["avg_gap"].astype(float).mean())
    others = [label for label in labels if label != best]
    adjusted = holm([verdict.paired_p(*paired(rows[label], rows[best])) for label in others])
    return best, [label for label, p in zip(others, adjusted) if not p < verdict.ALPHA]


def with_holm(table: pd.DataFrame, family: list[str]) -> pd.DataFrame:
    """Holm-adjusted p (`p_holm`) within each family of rows (the rows sharing the `family` columns)."""
    if table.empty:
        return table
    table["p_holm"] = table.groupby(family, sort=False)["p"].transform(lambda p: holm(p.to_numpy()))
    return table


def tuning_comparison(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tuned rows (`ft (tuned, oracle)`, docs/tuning.md) against their method's default row in the same setting:
    per method and track, the paired per-seed Avg Gap difference tuned − default (mean, 95 % t-interval, p of
    the paired t-test, on the seeds both have); per setting and track, Kendall τ between the zoo's ranking
    with its defaults and with its tuned values (95 % bootstrap interval over seeds), over the methods that
    have both rows. Empty frames when no setting holds a tuned row beside its default."""
    pairs, rankings = [], []
    for keys, part in frame[~frame["reference"]].dropna(subset=["avg_gap"]).groupby(GROUP, sort=False):
        rows = {m: g for m, g in part.groupby("method", sort=False)}
        tuned = {m: TUNED_LABEL.match(m) for m in rows}
        tracks = sorted({found["track"] for found in tuned.values() if found})
        for track in tracks:
            default_gaps, tuned_gaps = {}, {}
            for label, found in tuned.items():
                if not found or found["track"] != track or found["base"] not in rows:
                    continue
                base = found["base"]
                diff = rows_difference(rows[label], rows[base])
                pairs.append({**dict(zip(GROUP, keys)), "method": base, "track": track, "n": diff["n"],
                              "default_gap": diff["b_gap"], "tuned_gap": diff["a_gap"],
                              "difference": diff["difference"], "difference_ci": diff["difference_ci"],
                              "p": diff["p"]})
                default_gaps.update(gaps_by_seed(rows[base]))
                tuned_gaps.update(relabelled(rows[label], base))
            found = verdict.kendall_settings(default_gaps, tuned_gaps)
            best, tied = track_best(rows, [label for label, f in tuned.items() if f and f["track"] == track])
            rankings.append({**dict(zip(GROUP, keys)), "track": track, "tau": found["tau"], "tau_low": found["low"],
                             "tau_high": found["high"], "methods": found["methods"], "seeds": found["seeds"],
                             "best": best, "tied_with_best": "; ".join(tied)})
    return with_holm(pd.DataFrame(pairs), [*GROUP, "track"]), pd.DataFrame(rankings)


def track_comparison(frame: pd.DataFrame) -> pd.DataFrame:
    """Two tuning tracks of the same methods against each other (docs/tuning.md: does tuning without a retrain model
    choose values as good as tuning on the Avg Gap to it?): per setting, pair of tracks and method with both
    tuned rows, the paired per-seed difference first − second (tracks in alphabetical order, so blind −
    oracle; positive = the first track's values are farther from retrain) with its 95 % t-interval and p;
    plus one row per setting and pair of tracks (method `(ranking)`) with Kendall τ between the two tracks'
    rankings and its bootstrap interval. Empty when no setting holds two tracks."""
    rows_out = []
    for keys, part in frame[~frame["reference"]].dropna(subset=["avg_gap"]).groupby(GROUP, sort=False):
        by_track: dict[str, dict[str, pd.DataFrame]] = {}
        for label, rows in part.groupby("method", sort=False):
            if found := TUNED_LABEL.match(label):
                by_track.setdefault(found["track"], {})[found["base"]] = rows
        tracks = sorted(by_track)
        for i, first in enumerate(tracks):
            for second in tracks[i + 1:]:
                head = {**dict(zip(GROUP, keys)), "first": first, "second": second}
                gaps_first, gaps_second = {}, {}
                for base in (m for m in by_track[first] if m in by_track[second]):
                    diff = rows_difference(by_track[first][base], by_track[second][base])
                    rows_out.append({**head, "method": base, "n": diff["n"], "first_gap": diff["a_gap"],
                                     "second_gap": diff["b_gap"], "difference": diff["difference"],
                                     "difference_ci": diff["difference_ci"], "p": diff["p"],
                                     "tau": math.nan, "tau_low": math.nan, "tau_high": math.nan})
                    gaps_first.update(relabelled(by_track[first][base], base))
                    gaps_second.update(relabelled(by_track[second][base], base))
                found = verdict.kendall_settings(gaps_first, gaps_second)
                rows_out.append({**head, "method": "(ranking)", "n": found["seeds"], "first_gap": math.nan,
                                 "second_gap": math.nan, "difference": math.nan, "difference_ci": math.nan,
                                 "p": math.nan, "tau": found["tau"], "tau_low": found["low"], "tau_high": found["high"]})
    return with_holm(pd.DataFrame(rows_out), [*GROUP, "first", "second"])


def track_markdown(tracks: pd.DataFrame) -> str:
    methods = tracks[tracks["method"] != "(ranking)"]
    ranking = tracks[tracks["method"] == "(ranking)"]

    shown = pd.DataFrame({
        "setting": [section_title(keys) for keys in methods[GROUP].itertuples(index=False)],
        "method": methods["method"], "n": methods["n"],
        "tracks": [f"{a} → {b}" for a, b in zip(methods["first"], methods["second"])],
        "first": [number(v) for v in methods["first_gap"]], "second": [number(v) for v in methods["second_gap"]],
        "first − second": [cell(m, h) for m, h in zip(methods["difference"], methods["difference_ci"])],
        "p": [p_text(p) for p in methods["p"]], "p (Holm)": [p_text(p) for p in methods["p_holm"]],
        "verdict": [difference_verdict(r.p_holm, r.difference, f"{r.first} closer", f"{r.second} closer")
                    for r in methods.itertuples()]})
    ranked = pd.DataFrame({
        "setting": [section_title(keys) for keys in ranking[GROUP].itertuples(index=False)],
        "tracks": [f"{a} → {b}" for a, b in zip(ranking["first"], ranking["second"])],
        "τ": [number(t) for t in ranking["tau"]],
        "95 % interval": [f"[{number(lo)}, {number(hi)}]" for lo, hi in zip(ranking["tau_low"], ranking["tau_high"])],
        "seeds": ranking["n"]})
    return "\n".join([
        "", "## Tuning track against tuning track", "",
        "Per method tuned on both tracks: the mean per-seed Avg Gap with each track's values on the seeds both rows "
        "have, and their paired difference (mean ± 95 % t-interval; negative = the first track's values are closer "
        "to retrain) with the paired two-sided t-test; family: every method of a setting and pair of tracks, "
        f"Holm-adjusted (verdict at adjusted p < {verdict.ALPHA}; *no difference* means not distinguishable at "
        "this n, not equal); then Kendall τ between the "
        "two tracks' rankings of those methods, 95 % BCa bootstrap interval over seeds.", "",
        shown.to_markdown(index=False), "", ranked.to_markdown(index=False), ""])


def tuning_markdown(pairs: pd.DataFrame, rankings: pd.DataFrame) -> str:
    shown = pd.DataFrame({
        "setting": [section_title(keys) for keys in pairs[GROUP].itertuples(index=False)],
        "method": pairs["method"], "track": pairs["track"], "n": pairs["n"],
        "default": [number(v) for v in pairs["default_gap"]], "tuned": [number(v) for v in pairs["tuned_gap"]],
        "tuned − default": [cell(m, h) for m, h in zip(pairs["difference"], pairs["difference_ci"])],
        "p": [p_text(p) for p in pairs["p"]], "p (Holm)": [p_text(p) for p in pairs["p_holm"]],
        "verdict": [difference_verdict(r.p_holm, r.difference, "tuned closer", "tuned farther")
                    for r in pairs.itertuples()]})
    ranked = pd.DataFrame({
        "setting": [section_title(keys) for keys in rankings[GROUP].itertuples(index=False)],
        "track": rankings["track"], "τ (default vs tuned)": [number(t) for t in rankings["tau"]],
        "95 % interval": [f"[{number(lo)}, {number(hi)}]" for lo, hi in zip(rankings["tau_low"], rankings["tau_high"])],
        "methods": rankings["methods"], "seeds": rankings["seeds"],
        "best tuned row": rankings["best"], "not distinguishable from it": rankings["tied_with_best"].fillna("")})
    return "\n".join([
        "", "## Tuned against default", "",
        "Per method and tuning track: the mean per-seed Avg Gap with the default and with the tuned values on the "
        "seeds both rows have, and their paired difference (mean ± 95 % t-interval; negative = tuning brought it "
        "closer to retrain) with the paired two-sided t-test; family: every tuned row of a setting and track "
        f"against its default, Holm-adjusted (verdict at adjusted p < {verdict.ALPHA}; *no difference* means not "
        "distinguishable at this n, not equal).", "",
        shown.to_markdown(index=False), "",
        "Does tuning change the ranking? Kendall τ between the methods' ranking (mean per-seed Avg Gap) with their "
        "defaults and with their tuned values, 95 % BCa bootstrap interval over seeds (a seed is resampled in both "
        "rankings at once); and the track's best tuned row with the track's rows not distinguishable from it "
        f"(paired t-tests against it, Holm over the track's rows, adjusted p ≥ {verdict.ALPHA}).", "",
        ranked.to_markdown(index=False), ""])

