"""What a table must let a reader check (docs/statistics.md): the regime, the baseline rows and the noise.

One module for the bar a setting must meet, the statistics every leaderboard prints and the one-line
verdict of a single cell, so the runner and the leaderboard cannot disagree on a definition.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence

import numpy as np

# docs/statistics.md: the original has memorised D, generalises visibly worse, and sits well above retraining's noise.
MIN_TRAIN_ACCURACY = 95.0   # original's accuracy on D_f and on D_r, percent
MIN_GENERALISATION_GAP = 5.0  # original's RA − TA, points
MIN_GAP_OVER_FLOOR = 3.0    # original's Avg Gap / retrain floor
ALPHA = 0.05                # level of the intervals (95 %) and of the paired test
MIN_SEEDS = 3               # no best and no ranking statistic (τ) from fewer seeds (per half, for τ of halves)
PAIRED_TEST = "paired two-sided t-test over seeds (α = 0.05)"


def regime(original: dict[str, float], retrain: dict[str, float], floor: float) -> dict[str, float | bool]:
    """The regime numbers of one cell from the original's and the retrain model's metrics (UA, RA, TA and
    the original's Avg Gap) and the retrain floor; `meets_bar` applies docs/statistics.md's three conditions."""
    forget_acc, retain_acc = 100.0 - original["UA"], original["RA"]
    gen_gap = retain_acc - original["TA"]
    original_gap = original["avg_gap"]
    ratio = original_gap / floor if floor > 0 else math.inf
    return {"original_forget_acc": forget_acc, "original_retain_acc": retain_acc, "original_TA": original["TA"],
            "original_gen_gap": gen_gap, "retrain_forget_acc": 100.0 - retrain["UA"],
            "retrain_retain_acc": retrain["RA"], "retrain_TA": retrain["TA"], "original_gap": original_gap,
            "retrain_floor": floor, "gap_over_floor": ratio,
            "meets_bar": bool(meets_bar(forget_acc, retain_acc, gen_gap, ratio))}


def meets_bar(forget_acc: float, retain_acc: float, gen_gap: float, gap_over_floor: float) -> bool:
    return (forget_acc >= MIN_TRAIN_ACCURACY and retain_acc >= MIN_TRAIN_ACCURACY
            and gen_gap >= MIN_GENERALISATION_GAP and gap_over_floor >= MIN_GAP_OVER_FLOOR)


def bar_misses(forget_acc: float, retain_acc: float, gen_gap: float, gap_over_floor: float) -> list[str]:
    """The conditions of the bar a setting misses, in words (empty when it meets it)."""
    misses = []
    if forget_acc < MIN_TRAIN_ACCURACY:
        misses.append(f"original forget accuracy {forget_acc:.1f} < {MIN_TRAIN_ACCURACY:g}")
    if retain_acc < MIN_TRAIN_ACCURACY:
        misses.append(f"original retain accuracy {retain_acc:.1f} < {MIN_TRAIN_ACCURACY:g}")
    if gen_gap < MIN_GENERALISATION_GAP:
        misses.append(f"generalisation gap {gen_gap:.1f} < {MIN_GENERALISATION_GAP:g}")
    if not gap_over_floor >= MIN_GAP_OVER_FLOOR:
        misses.append(f"original gap / retrain floor {floor2(gap_over_floor)} < {MIN_GAP_OVER_FLOOR:g}")
    return misses


def floor2(value: float) -> str:
    """Two decimals rounded down, so a ratio just under the bar never prints as the bar itself (3.00 < 3)."""
    return f"{math.floor(value * 100) / 100:.2f}" if math.isfinite(value) else str(value)


def t_interval(values: Sequence[float], level: float = 1 - ALPHA) -> tuple[float, float, int]:
    """(mean, half-width of the Student-t interval, n); the half-width is NaN below two values."""
    from scipy import stats

    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(data)
    if n == 0:
        return math.nan, math.nan, 0
    if n < 2:
        return float(data.mean()), math.nan, 1
    half = stats.t.ppf(0.5 + level / 2, n - 1) * data.std(ddof=1) / math.sqrt(n)
    return float(data.mean()), float(half), n


def paired_difference(differences: Sequence[float]) -> dict[str, float]:
    """The paired design's one computation, shared by the runner's verdict line and every report: mean of
    the per-seed differences, its 95 % Student-t half-width and the two-sided p of mean 0 (NaN below n = 2).
    A difference constant up to rounding has sd 0: p = 1 when it is 0 (nothing tells the two apart), else 0."""
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    n = len(d)
    if n < 2:
        return {"n": n, "mean": float(d.mean()) if n else math.nan, "half": math.nan, "p": math.nan, "sd": math.nan}
    sd = float(d.std(ddof=1))
    if sd <= 1e-12 * max(1.0, float(np.abs(d).max())):
        sd = 0.0
    half = float(stats.t.ppf(1 - ALPHA / 2, n - 1) * sd / math.sqrt(n))
    p = (1.0 if d.mean() == 0 else 0.0) if sd == 0 else float(stats.ttest_1samp(d, 0.0).pvalue)
    return {"n": n, "mean": float(d.mean()), "half": half, "p": p, "sd": sd}


def paired_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided paired t-test of a − b = 0 over seeds (`paired_difference`); NaN with a non-finite value."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return paired_difference(diff)["p"] if np.isfinite(diff).all() else math.nan


def most_common_seeds(seed_sets: dict[str, frozenset[int]]) -> frozenset[int]:
    """The seed set most methods have (the larger on a tie; empty when none has a seed): rank statistics
    over it, so that one method still running does not shrink every method's seeds."""
    counts = Counter(seeds for seeds in seed_sets.values() if seeds)
    return max(counts, key=lambda seeds: (counts[seeds], len(seeds))) if counts else frozenset()


def kendall_halves(per_seed: dict[str, dict[int, float]]) -> tuple[float, int, int, list[str]]:
    """Kendall τ between the rankings of the methods by mean gap on two disjoint halves of the seeds
    (seeds sorted, alternately assigned: 0, 2, 4 … vs 1, 3, 5 …); (τ, seeds in half 1, seeds in half 2,
    the methods left out). The seeds are the seed set most methods have (the larger on a tie), so that one
    method still running does not shrink everyone's halves; a method missing one of them is left out.
    NaN with fewer than two methods left in or one seed."""
    from scipy import stats

    common = most_common_seeds({m: frozenset(v) for m, v in per_seed.items()})
    if not common:
        return math.nan, 0, 0, sorted(per_seed)
    seeds = sorted(common)
    methods = [m for m, v in per_seed.items() if common <= set(v)]
    left_out = [m for m in per_seed if m not in methods]
    first, second = seeds[0::2], seeds[1::2]
    if len(methods) < 2 or not second:
        return math.nan, len(first), len(second), left_out
    mean_a = [np.mean([per_seed[m][s] for s in first]) for m in methods]
    mean_b = [np.mean([per_seed[m][s] for s in second]) for m in methods]
    tau = stats.kendalltau(mean_a, mean_b).statistic
    return float(tau), len(first), len(second), left_out


def kendall_settings(a: dict[str, dict[int, float]], b: dict[str, dict[int, float]], resamples: int = 2000,
                     seed: int = 0) -> dict:
    """Kendall τ between the method rankings (mean per-seed gap) of two settings, with a 95 % BCa bootstrap
    interval over seeds (scipy.stats.bootstrap). A seed is resampled in both settings at once: it draws the
    same original model there, so the two rankings are paired. The seeds are the set most methods have in
    both settings (`most_common_seeds`); a method missing one of them, or missing from a setting, is left
    out. Returns tau, low, high, methods, seeds, left_out; τ and its interval are NaN below two methods or
    below MIN_SEEDS seeds."""
    from scipy import stats

    both = [m for m in a if m in b]
    shared = {m: frozenset(a[m]) & frozenset(b[m]) for m in both}
    common = most_common_seeds(shared)
    methods = [m for m in both if common and common <= shared[m]]
    left_out = sorted((set(a) | set(b)) - set(methods))
    out = {"tau": math.nan, "low": math.nan, "high": math.nan, "methods": len(methods), "seeds": len(common),
           "left_out": left_out}
    if len(methods) < 2:
        return out
    seeds = sorted(common)
    gaps_a = np.array([[a[m][s] for s in seeds] for m in methods], dtype=float)  # methods x seeds
    gaps_b = np.array([[b[m][s] for s in seeds] for m in methods], dtype=float)

    def tau_on(columns: np.ndarray) -> float:
        return float(stats.kendalltau(gaps_a[:, columns].mean(1), gaps_b[:, columns].mean(1)).statistic)

    if len(seeds) < MIN_SEEDS:  # a ranking from one or two seeds is noise, not a ranking
        return out
    out["tau"] = tau_on(np.arange(len(seeds)))
    if len(seeds) >= 2:
        with warnings.catch_warnings():  # a degenerate resample distribution gives NaN, reported as n/a
            warnings.simplefilter("ignore")
            found = stats.bootstrap((np.arange(len(seeds)),), lambda columns: tau_on(columns.astype(int)),
                                    vectorized=False, n_resamples=resamples, method="BCa",
                                    confidence_level=1 - ALPHA, rng=np.random.default_rng(seed))
        out["low"], out["high"] = float(found.confidence_interval.low), float(found.confidence_interval.high)
    return out


def verdict_line(method: str, gap: float, floor: float, original_gap: float, seeds: int = 1) -> str:
    """One sentence for one cell: inside the retrain floor, better than doing nothing, or not."""
    where = f"{method}: Avg Gap {gap:.2f} vs retrain floor {floor:.2f} and doing nothing {original_gap:.2f}"
    if not math.isfinite(gap):
        verdict = "no verdict (the method's gap is not finite)"
    elif gap <= floor:
        verdict = "indistinguishable from retraining (inside the floor)"
    elif gap >= original_gap:
        verdict = "NOT better than doing nothing"
    else:
        verdict = "closer to retrain than doing nothing, above the retrain floor"
    note = f"{seeds} seed, no interval: a multirun over seeds and the leaderboard give one" if seeds == 1 else f"{seeds} seeds"
    return f"verdict: {where} -> {verdict} ({note})"
