"""The papers' claim about augmentation, in their terms: TrivialAug lowers a method's Avg Gap to retrain
against crop + flip, by up to about 40 %. The verdict per method and rate reads the augmentation report's
comparisons (reproduced, refuted or not settled, and why); beside it, where the papers' size of the drop lies
against the relative change's interval, and the change in the papers' estimator (the gap of seed-mean
metrics)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from unlearn_bench.verdict import MIN_SEEDS

CLAIM = ("trivialaug", "default")  # the papers' claim: TrivialAug lowers the Avg Gap against crop + flip
CLAIMED_CHANGE = -40.0  # %, the largest drop the papers report for TrivialAug against crop + flip


def against_claimed_size(change: float, half: float) -> str:
    """Where the papers' reported drop (CLAIMED_CHANGE) lies against a relative change's 95 % interval: inside
    it (the size is not contradicted), or outside it on either side. A verdict on the direction says nothing
    of the size, and a drop much smaller than the papers' is a partial reproduction at best."""
    if not (math.isfinite(change) and math.isfinite(half)):
        return "no interval"
    if change + half < CLAIMED_CHANGE:
        return f"larger drop than {CLAIMED_CHANGE:.0f} %"
    if change - half > CLAIMED_CHANGE:
        return f"smaller drop than {CLAIMED_CHANGE:.0f} %"
    return f"{CLAIMED_CHANGE:.0f} % inside the interval"


def untested(n: int) -> str:
    """Fewer than MIN_SEEDS paired seeds: no outcome. With two, the t-test has one degree of freedom and
    two coincidentally equal differences read as significant (the project's small-n rule, as for a best)."""
    return f"{n} seed{'s' if n != 1 else ''}: untested (needs {MIN_SEEDS})"


def gap_of_means(rows: pd.DataFrame) -> float:
    """The papers' estimator of a row's Avg Gap: each metric averaged over the seeds first, then the mean
    |method − retrain| over the metrics the records' gap is over. NaN where the records lack the metrics."""
    names = [c.split(":", 1)[1] for c in rows.columns if c.startswith("method:") and f"retrain:{c[7:]}" in rows]
    if not names or rows[[f"{side}:{n}" for n in names for side in ("method", "retrain")]].isna().any().any():
        return math.nan
    return float(np.mean([abs(rows[f"method:{n}"].mean() - rows[f"retrain:{n}"].mean()) for n in names]))


def relative_change_of_means(frame: pd.DataFrame, method: str, rate: str, seeds: list[int],
                             pipeline: str, baseline: str) -> float:
    """100 (G_pipeline − G_baseline) / G_baseline with G the gap of means over `seeds`: the papers' terms."""
    part = frame[(frame["method"] == method) & (frame["rate"] == rate) & frame["seed"].isin(seeds)]
    mine, theirs = (gap_of_means(part[part["augmentation"] == aug]) for aug in (pipeline, baseline))
    return 100 * (mine - theirs) / theirs if theirs else math.nan


def verdicts(against_default: pd.DataFrame) -> pd.DataFrame:
    """Per method and rate, the papers' claim (TrivialAug closer to retrain than crop + flip) from the numbers."""
    rows = []
    claim = against_default[against_default["augmentation"] == CLAIM[0]] if not against_default.empty else against_default
    for row in claim.to_dict("records"):
        if row["outcome"] == "closer" and row["normalised_outcome"] == "lower":
            verdict, why = "reproduced", "lower Avg Gap and lower normalised gap (Holm-adjusted)"
        elif row["outcome"] == "closer":
            verdict, why = "not settled", ("lower Avg Gap, but the normalised gap is not lower: the drop may follow "
                                           "what the original memorised rather than better unlearning")
        elif row["outcome"] in ("farther", "equivalent within δ"):
            verdict, why = "refuted", f"{row['outcome']} (δ = {row['margin']:.2f})" if row["outcome"] != "farther" \
                else "farther from retrain (Holm-adjusted)"
        elif row["n"] < MIN_SEEDS:
            verdict, why = "not settled", untested(row["n"])
        else:
            verdict, why = "not settled", (f"undecided at n = {row['n']}: a difference below "
                                           f"{row['detectable']:.2f} could go unseen")
        rows.append({"method": row["method"], "rate": row["rate"], "n": row["n"],
                     "relative_change": row["relative_change"], "relative_half": row["relative_half"],
                     "relative_change_of_means": row["relative_change_of_means"],
                     "papers_size": against_claimed_size(row["relative_change"], row["relative_half"]),
                     "verdict": verdict, "why": why})
    return pd.DataFrame(rows)


