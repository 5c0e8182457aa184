"""The tests every verdict of a report rests on: paired t intervals, Holm's step-down correction, two
one-sided tests for equivalence, the smallest difference a paired design can detect, and Kendall's τ with
a bootstrap interval over seeds. scipy does the distributions; these functions only put them together."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import optimize, stats

from unlearn_bench.verdict import ALPHA

POWER = 0.8


def family_size(p_values: Sequence[float]) -> int:
    """How many tests a family holds: its p-values that are not NaN (a comparison without a test is not in it),
    the m of Holm's correction and of family_alpha."""
    return int(np.count_nonzero(~np.isnan(np.asarray(p_values, dtype=float))))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN entries stay NaN and do not count in the family)."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(len(p), np.nan)
    present = np.flatnonzero(~np.isnan(p))
    m = family_size(p)
    order = present[np.argsort(p[present], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def tost(differences: Sequence[float], margin: float) -> float:
    """Two one-sided tests of |mean difference| < margin: the larger of the two one-sided p-values (small:
    equivalent within the margin). NaN below n = 2 or without a positive margin."""
    d = np.asarray(differences, dtype=float)
    n = len(d)
    if n < 2 or not margin > 0:
        return math.nan
    sd = float(d.std(ddof=1))
    if sd <= 1e-12 * max(1.0, float(np.abs(d).max())):  # a constant difference: inside the margin or not
        return 0.0 if abs(d.mean()) < margin else 1.0
    se = sd / math.sqrt(n)
    lower = stats.t.sf((d.mean() + margin) / se, n - 1)   # H0: mean <= -margin
    upper = stats.t.cdf((d.mean() - margin) / se, n - 1)  # H0: mean >= margin
    return float(max(lower, upper))


def family_alpha(size: int) -> float:
    """The level at which a family of `size` Holm-corrected tests is sure to reject a hypothesis: α / size.
    A p-value below it is rejected at whatever step it falls (every step's level is at least α / size), so the
    difference detectable at this level is one the corrected table would report; at the unadjusted α the
    figure would promise differences that the correction then leaves undecided."""
    return ALPHA / max(int(size), 1)


def detectable_difference(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true mean difference a two-sided paired t-test at `alpha` detects with `power`, given the
    spread `sd` of the paired differences and n pairs (noncentral t). NaN below n = 2 or without a spread."""
    if n < 2 or not sd > 0:
        return math.nan
    df = n - 1
    critical = stats.t.ppf(1 - alpha / 2, df)

    def shortfall(effect: float) -> float:
        nc = effect * math.sqrt(n) / sd
        found = stats.nct.sf(critical, df, nc) + stats.nct.cdf(-critical, df, nc)
        if not math.isfinite(found):  # scipy's noncentral t gives NaN far in the tail, where power is ~1
            found = stats.norm.sf(critical - nc) + stats.norm.cdf(-critical - nc)
        return found - power

    high = 2 * (critical + stats.norm.ppf(power)) * sd / math.sqrt(n)  # twice the normal approximation
    while shortfall(high) < 0:
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-10 * sd))


def kendall_interval(scores: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], seeds: np.ndarray,
                     resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Kendall's τ between two rankings built from `scores(seeds)` (two arrays of per-item means), with a
    95 % percentile bootstrap interval that resamples the seeds (both rankings from the same resample: a
    seed draws one original model for both). NaN from fewer than 3 seeds."""
    seeds = np.asarray(seeds)
    if len(seeds) < 3:
        return math.nan, math.nan, math.nan
    a, b = scores(seeds)
    tau = float(stats.kendalltau(a, b).statistic)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        a_i, b_i = scores(rng.choice(seeds, size=len(seeds), replace=True))
        value = stats.kendalltau(a_i, b_i).statistic
        if not math.isnan(value):
            draws.append(value)
    if not draws:
        return tau, math.nan, math.nan
    low, high = np.percentile(draws, [2.5, 97.5])
    return tau, float(low), float(high)
