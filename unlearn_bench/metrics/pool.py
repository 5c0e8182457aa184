"""Scores of a method against pools of models (docs/pools.md): the NeurIPS 2023 challenge's forgetting quality,
KLoM and a per-example likelihood-ratio attack.

Each score compares, example by example, the distribution of a statistic over N unlearned models (one
original, N seeded unlearning runs) with its distribution over N retrained models. Inputs are arrays of
shape [N models, n examples]; everything is vectorised over examples and thresholds with numpy, so a
forget set of thousands of examples and N = 32 scores in seconds on a CPU (the references loop over
examples in Python and need CUDA).
"""

from __future__ import annotations

import math

import numpy as np

from unlearn_bench.registry import Registry

POOL_SCORES: Registry = Registry("pool score")

DELTA = 1e-5          # the challenge's δ
EPSILON_CAP = 50.0    # ε is clipped here; a peaky (deterministic) unlearned distribution gets it
THRESHOLDS_PER_UNIT = 100  # the reference's threshold grid (rates="grid")
BUFFER = 2.0          # the reference's slack around the double-threshold interval


def logit_scaled_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """s = log p_y − log Σ_{j≠y} p_j, computed as the challenge's metric.py does (float64 softmax after
    removing the largest logit, the true class's probability set to 0 before the wrong-class mass is
    summed, 1e-45 inside each log), for logits [..., n, C] and labels [n].

    The wrong-class mass is summed from the wrong classes themselves, never taken as Σ p − p_y: that
    difference cancels to 0 once s passes about 36, and s would then jump to log 1e45 ≈ 103.6 for every
    confident model, making a confident pool constant (ε = 50, no points)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=-1, keepdims=True)
    index = np.broadcast_to(np.asarray(labels)[..., None], probs.shape[:-1] + (1,))
    correct = np.take_along_axis(probs, index, axis=-1)[..., 0]
    np.put_along_axis(probs, index, 0.0, axis=-1)
    wrong = probs.sum(axis=-1)
    return np.log(correct + 1e-45) - np.log(wrong + 1e-45)


def margins(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """KLoM's margin: logit_y − logsumexp of the other logits (data-unlearning-bench's eval.py)."""
    logits = np.asarray(logits, dtype=np.float64)
    index = np.broadcast_to(np.asarray(labels)[..., None], logits.shape[:-1] + (1,))
    correct = np.take_along_axis(logits, index, axis=-1)[..., 0]
    others = logits.copy()
    np.put_along_axis(others, index, -np.inf, axis=-1)
    top = others.max(axis=-1, keepdims=True)
    return correct - (top[..., 0] + np.log(np.exp(others - top).sum(axis=-1)))


def _epsilon_from_rates(tpr: np.ndarray, fpr: np.ndarray, valid: np.ndarray, delta: float) -> np.ndarray:
    """ε per example from the true- and false-positive rates [n, T] at T candidate thresholds (`valid`
    masks the candidates that exist). As metric.py: both error rates 0 is perfect separation (∞); exactly
    one of them 0 is discarded; otherwise max(log(1 − δ − FPR) − log FNR, log(1 − δ − FNR) − log FPR),
    floored at 0; the largest over thresholds."""
    fnr = 1.0 - tpr
    perfect = (fpr == 0) & (fnr == 0) & valid
    usable = valid & (fpr > 0) & (fnr > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(1.0 - delta - fpr) - np.log(fnr)
        b = np.log(1.0 - delta - fnr) - np.log(fpr)
    eps = np.clip(np.fmax(a, b), 0.0, None)
    eps = np.where(usable, eps, -np.inf)
    best = eps.max(axis=1)
    best = np.where(perfect.any(axis=1), np.inf, best)
    return np.where(np.isfinite(best) | (best == np.inf), best, 0.0)  # nothing usable: nothing told apart


def _counts_at(values: np.ndarray, lower: np.ndarray, upper: np.ndarray | None) -> np.ndarray:
    """How many of `values` [n, N] lie in [lower, upper] (or ≥ lower when upper is None), per example and
    candidate ([n, T] bounds), in chunks so memory stays bounded."""
    out = np.empty(lower.shape, dtype=np.int64)
    chunk = max(1, int(2e7 // max(1, values.shape[1] * lower.shape[1])))
    for start in range(0, len(values), chunk):
        v = values[start:start + chunk, :, None]
        inside = v >= lower[start:start + chunk, None, :]
        if upper is not None:
            inside &= v <= upper[start:start + chunk, None, :]
        out[start:start + chunk] = inside.sum(axis=1)
    return out


def _single_threshold(pos: np.ndarray, neg: np.ndarray, rates: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predict positive when s ≥ t. `samples`: t at every sample value (the rates only change there);
    `grid`: the reference's 100-per-unit grid from the smallest to the largest value."""
    both = np.concatenate([pos, neg], axis=1)
    if rates == "samples":  # counts from one sort: how many of each pool lie at or above each value
        order = np.argsort(both, axis=1, kind="stable")
        values = np.take_along_axis(both, order, axis=1)
        is_pos = order < pos.shape[1]
        below_pos = np.concatenate([np.zeros((len(both), 1), int), np.cumsum(is_pos, axis=1)[:, :-1]], axis=1)
        below = np.arange(both.shape[1])[None, :]
        tp = pos.shape[1] - below_pos
        fp = neg.shape[1] - (below - below_pos)
        valid = np.concatenate([np.ones((len(both), 1), bool), values[:, 1:] != values[:, :-1]], axis=1)
        return tp, fp, valid  # a tied value counts once, at its first position
    else:
        low, high = both.min(axis=1), both.max(axis=1)
        counts = np.ceil((high - low) * THRESHOLDS_PER_UNIT).astype(int)
        width = max(1, int(counts.max()))
        thresholds = _linspace_rows(low, high, counts, width, "torch")
        valid = np.arange(width)[None, :] < counts[:, None]
    return _counts_at(pos, thresholds, None), _counts_at(neg, thresholds, None), valid


def _linspace_rows(start: np.ndarray, stop: np.ndarray, counts: np.ndarray, width: int, style: str) -> np.ndarray:
    """Row i holds linspace(start[i], stop[i], counts[i]), padded to `width` columns, with the arithmetic of
    the library the reference calls there: `numpy` (i · step + start, the last value set to stop) or `torch`
    (start + step · i on the first half, stop − step · (n − 1 − i) on the second). Both keep the end points
    exact, which is what matters: the range's end points are samples, and a threshold an ulp off them moves
    a model across it."""
    counts = np.asarray(counts)
    index = np.arange(width, dtype=np.float64)[None, :]
    div = np.maximum(counts - 1, 1)[:, None].astype(np.float64)
    start, stop = np.asarray(start, np.float64)[:, None], np.asarray(stop, np.float64)[:, None]
    step = (stop - start) / div
    if style == "numpy":
        rows = index * step + start
        rows[np.arange(len(rows)), np.maximum(counts - 1, 0)] = np.where(counts > 1, stop[:, 0], start[:, 0])
    else:
        rows = np.where(index < (counts // 2)[:, None], start + step * index,
                        stop - step * (counts[:, None] - 1 - index))
        rows[:, :1] = start  # one threshold: torch gives [start]
    return rows


def _double_threshold(pos: np.ndarray, neg: np.ndarray, rates: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predict positive inside [l, r], where `positive` is the peakier of the two distributions (smaller
    spread w). The reference scans r from min + w − 2 to max + 2 of the peakier one and l within r − w ± 2.
    `samples`: every interval between two sample values whose sample set some such (l, r) selects (l and r
    may move freely between neighbouring samples); `grid`: the reference's 100-per-unit grid."""
    spread_pos = pos.max(axis=1) - pos.min(axis=1)
    spread_neg = neg.max(axis=1) - neg.min(axis=1)
    swap = spread_pos >= spread_neg
    peaky = np.where(swap[:, None], neg, pos)
    other = np.where(swap[:, None], pos, neg)
    width = np.minimum(spread_pos, spread_neg)
    r_low, r_high = peaky.min(axis=1) + width - BUFFER, peaky.max(axis=1) + BUFFER
    if rates == "samples":
        merged = np.concatenate([peaky, other], axis=1)
        order = np.argsort(merged, axis=1, kind="stable")
        values = np.take_along_axis(merged, order, axis=1)
        cum_peaky = np.concatenate([np.zeros((len(merged), 1), int), np.cumsum(order < peaky.shape[1], axis=1)],
                                   axis=1)
        n = values.shape[1]
        i, j = np.triu_indices(n)
        a, b = values[:, i], values[:, j]
        previous = np.concatenate([np.full((len(values), 1), -np.inf), values[:, :-1]], axis=1)
        following = np.concatenate([values[:, 1:], np.full((len(values), 1), np.inf)], axis=1)
        # the sample set of [a, b]: l in (previous(a), a], r in [b, following(b)), r in [r_low, r_high],
        # r − l in [w − 2, w + 2]
        r_min = np.maximum(b, r_low[:, None])
        r_max = np.minimum(following[:, j], r_high[:, None])
        w = width[:, None]
        valid = (r_min <= r_max) & (r_min - a <= w + BUFFER) & (r_max - previous[:, i] > w - BUFFER)
        valid &= ~((i[None, :] > 0) & (values[:, i] == previous[:, i]))  # ties: one candidate per value
        valid &= ~((j[None, :] < n - 1) & (values[:, j] == following[:, j]))
        tp = cum_peaky[:, j + 1] - cum_peaky[:, i]  # peaky samples at sorted positions i..j
        fp = (j - i + 1)[None, :] - tp
        return tp, fp, valid
    else:
        counts = np.ceil((r_high - r_low) * THRESHOLDS_PER_UNIT).astype(int)
        n_right = max(1, int(counts.max()))
        n_left = int(math.ceil(2 * BUFFER * THRESHOLDS_PER_UNIT))
        right = _linspace_rows(r_low, r_high, counts, n_right, "numpy")
        centre = (right - width[:, None]).ravel()  # the reference: linspace(r − w − 2, r − w + 2) per r
        lower = _linspace_rows(centre - BUFFER, centre + BUFFER, np.full(len(centre), n_left), n_left, "numpy")
        lower = lower.reshape(len(right), n_right * n_left)
        upper = np.repeat(right, n_left, axis=1)
        valid = np.repeat(np.arange(n_right)[None, :] < counts[:, None], n_left, axis=1)
    tp = _counts_at(peaky, lower, upper)
    fp = _counts_at(other, lower, upper)
    return tp, fp, valid


def example_epsilons(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA,
                     rates: str = "grid") -> np.ndarray:
    """ε per forget example (google-deepmind/unlearning_evaluation, metric.py): the positive class of an
    example is whichever pool has the larger median; an example whose smaller spread is below 1 % of the
    larger gets the cap; otherwise the largest ε over the single- and double-threshold rules, clipped to
    [0, 50]. `rates`: grid (the reference's thresholds, about 0.01 apart: the default) | samples (a cut at
    every sample value: every rate pair a threshold can give, so ε is at least the grid's, and higher where
    samples lie closer than the grid's step, as in pools spread over 0.02–0.05)."""
    if rates not in ("samples", "grid"):
        raise ValueError(f"rates={rates!r}; accepted: samples, grid")
    u, r = (np.asarray(x, dtype=np.float64).T for x in (unlearned, retrained))  # [n, N]
    if u.shape != r.shape:
        raise ValueError(f"pools of one shape are needed (got {u.shape[::-1]} and {r.shape[::-1]})")
    retrain_positive = np.median(r, axis=1) > np.median(u, axis=1)
    pos = np.where(retrain_positive[:, None], r, u)
    neg = np.where(retrain_positive[:, None], u, r)
    spread_pos, spread_neg = np.ptp(pos, axis=1), np.ptp(neg, axis=1)
    largest, smallest = np.maximum(spread_pos, spread_neg), np.minimum(spread_pos, spread_neg)
    with np.errstate(divide="ignore", invalid="ignore"):
        peaky = smallest / largest < 0.01
    eps = np.zeros(len(pos))
    todo = ~peaky & (largest > 0)
    if todo.any():
        p, q = pos[todo], neg[todo]
        tp_s, fp_s, valid_s = _single_threshold(p, q, rates)
        eps_single = _epsilon_from_rates(tp_s / p.shape[1], fp_s / q.shape[1], valid_s, delta)
        tp_d, fp_d, valid_d = _double_threshold(p, q, rates)  # rates of the peakier pool vs the other
        eps_double = _epsilon_from_rates(tp_d / p.shape[1], fp_d / q.shape[1], valid_d, delta)
        eps[todo] = np.maximum(eps_single, eps_double)
    eps[peaky] = EPSILON_CAP
    both_constant = largest == 0
    eps[both_constant] = np.where(np.median(pos[both_constant], axis=1) == np.median(neg[both_constant], axis=1),
                                  0.0, EPSILON_CAP)
    return np.clip(eps, 0.0, EPSILON_CAP)


def bucket_points(epsilons: np.ndarray, n_models: int) -> np.ndarray:
    """Points per example: ε in [0.5 k, 0.5 (k + 1)) earns 2^−k for the bins that end at or below
    ceil(ln(N − 1)); beyond the last bin, 0."""
    max_epsilon = math.ceil(math.log(n_models - 1)) if n_models > 2 else 0
    n_bins = int(max_epsilon / 0.5)
    bins = np.floor(np.asarray(epsilons) / 0.5)
    points = np.power(0.5, bins)
    return np.where(bins < n_bins, points, 0.0)


@POOL_SCORES.register("forgetting_quality")
def forgetting_quality(unlearned_conf: np.ndarray, retrained_conf: np.ndarray, rates: str = "grid") -> float:
    """F of the NeurIPS 2023 unlearning challenge (google-deepmind/unlearning_evaluation, metric.py,
    compute_forget_score_from_confs): mean bucket points of the per-example ε over D_f; 1 = retrained-like."""
    eps = example_epsilons(unlearned_conf, retrained_conf, rates=rates)
    return float(bucket_points(eps, np.asarray(unlearned_conf).shape[0]).mean())


def final_score(quality: float, ra_unlearned: float, ra_retrained: float, ta_unlearned: float,
                ta_retrained: float) -> float:
    """The challenge's final score: F × (RA_u / RA_r) × (TA_u / TA_r), accuracies averaged over the pools."""
    return quality * (ra_unlearned / ra_retrained) * (ta_unlearned / ta_retrained)


TOP_EDGES = ("closed", "reference")


def binned_kl(p: np.ndarray, q: np.ndarray, bins: int = 20, eps: float = 1e-5, clip: float = 100.0,
              top_edge: str = "closed") -> np.ndarray:
    """KL(p ‖ q) per example from samples [N, n], as data-unlearning-bench's compute_binned_KL_div:
    values clipped to ±clip, `bins` equal-width bins over the joint range, q floored at eps where p > 0 and
    renormalised (scipy.stats.entropy).

    `top_edge`: `closed` counts a value equal to the top of the range in the last bin (np.histogram's
    convention). `reference` reproduces the reference's np.digitize, which leaves such a value out of every
    bin: a pool that is constant at the top of the range (doing nothing, on a forget example the original
    fits best) then has no counted sample, and the reference's scipy.stats.entropy returns NaN for it; values
    at the top of a spread pool are silently dropped. The default is `closed`."""
    if top_edge not in TOP_EDGES:
        raise ValueError(f"top_edge={top_edge!r}; accepted: {', '.join(TOP_EDGES)}")
    p = np.clip(np.asarray(p, dtype=np.float64).T, -clip, clip)  # [n, N]
    q = np.clip(np.asarray(q, dtype=np.float64).T, -clip, clip)
    start = np.minimum(p.min(axis=1), q.min(axis=1))
    end = np.maximum(p.max(axis=1), q.max(axis=1))
    end = np.where(start >= end, start + 1.0, end)
    edges = np.stack([np.linspace(s, e, bins + 1) for s, e in zip(start, end)])  # np.linspace's own rounding

    def histogram(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inside = (x[:, :, None] >= edges[:, None, :-1]) & (x[:, :, None] < edges[:, None, 1:])
        if top_edge == "closed":
            inside[:, :, -1] |= x == edges[:, -1:]
        counts = inside.sum(axis=1).astype(np.float64)
        total = counts.sum(axis=1, keepdims=True)
        return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0), total[:, 0]

    (hp, p_total), (hq, _) = histogram(p), histogram(q)
    hq = np.where(hp > 0, np.maximum(hq, eps), hq)
    with np.errstate(divide="ignore", invalid="ignore"):
        hq = hq / hq.sum(axis=1, keepdims=True)
        terms = np.where(hp > 0, hp * np.log(hp / hq), 0.0)
    return np.where(p_total > 0, terms.sum(axis=1), np.nan)  # nothing counted: scipy's NaN


KLOM_DIRECTIONS = ("retrain_first", "unlearned_first")


@POOL_SCORES.register("klom")
def klom(unlearned_margins: np.ndarray, retrained_margins: np.ndarray, top_edge: str = "closed",
         direction: str = "retrain_first") -> dict[str, float]:
    """KLoM (RoyRin/data-unlearning-bench, unlearning_bench/eval.py): per example, a binned KL divergence
    between the two pools' margins; mean and 95th percentile over the examples given (with
    top_edge=reference, over those the reference can score; `unscored` counts the others).

    `direction`: `retrain_first` is KL(retrained ‖ unlearned), what the reference's pipeline computes (its
    data-unlearning/run.py, load_klom, passes the oracle's margins first to kl_from_margins);
    `unlearned_first` is KL(unlearned ‖ retrained). KL is not symmetric: the first pool's empty bins add
    nothing, the second pool's are floored at 1e-5, so the direction decides which pool's stray mass counts."""
    if direction not in KLOM_DIRECTIONS:
        raise ValueError(f"direction={direction!r}; accepted: {', '.join(KLOM_DIRECTIONS)}")
    first, second = ((retrained_margins, unlearned_margins) if direction == "retrain_first"
                     else (unlearned_margins, retrained_margins))
    kl = binned_kl(first, second, top_edge=top_edge)
    scored = kl[np.isfinite(kl)]
    if not len(scored):
        return {"mean": math.nan, "p95": math.nan, "unscored": int(len(kl))}
    return {"mean": float(scored.mean()), "p95": float(np.percentile(scored, 95)), "unscored": int(len(kl) - len(scored))}


def _gaussian_loglik(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * math.log(2 * math.pi)


STD_FLOOR = 1e-3  # a pool whose statistic does not vary still gets a (very narrow) Gaussian


@POOL_SCORES.register("lira")
def likelihood_ratio_attack(unlearned_conf: np.ndarray, retrained_conf: np.ndarray,
                            fpr: float = 0.01) -> dict[str, float]:
    """Per-example likelihood-ratio attack on the pools (U-LiRA style, docs/pools.md): for every model, a Gaussian
    per forget example fitted to the logit-scaled confidence under each pool, with that model (and the model
    of the same index in the other pool) left out; the model's score is the summed log likelihood ratio (unlearned vs retrained). AUC and TPR
    at `fpr` of telling the unlearned models from the retrained ones (0.5 and ~fpr: indistinguishable)."""
    u, r = np.asarray(unlearned_conf, dtype=np.float64), np.asarray(retrained_conf, dtype=np.float64)

    def leave_one_out(pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(pool)
        total, squares = pool.sum(axis=0), (pool ** 2).sum(axis=0)
        mean = (total[None] - pool) / (n - 1)
        var = ((squares[None] - pool ** 2) - (n - 1) * mean ** 2) / max(n - 2, 1)
        return mean, np.sqrt(np.clip(var, STD_FLOOR ** 2, None))

    if len(u) != len(r) or len(u) < 3:
        raise ValueError(f"pools of equal size >= 3 are needed (got {len(u)} and {len(r)})")
    # Model k of either pool is scored against both pools with their k-th model left out: its own pool
    # must not contain it, and the other pool then rests on as many models, so neither side is favoured
    # by a better-estimated Gaussian.
    mu_u, sd_u = leave_one_out(u)
    mu_r, sd_r = leave_one_out(r)
    score_u = (_gaussian_loglik(u, mu_u, sd_u) - _gaussian_loglik(u, mu_r, sd_r)).sum(axis=1)
    score_r = (_gaussian_loglik(r, mu_u, sd_u) - _gaussian_loglik(r, mu_r, sd_r)).sum(axis=1)
    return {"auc": roc_auc(score_u, score_r), "tpr_at_fpr": tpr_at_fpr(score_u, score_r, fpr)}


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting one half (Mann-Whitney)."""
    diff = np.asarray(positive)[:, None] - np.asarray(negative)[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def tpr_at_fpr(positive: np.ndarray, negative: np.ndarray, fpr: float) -> float:
    """The largest share of positives above a threshold that lets at most `fpr` of the negatives through."""
    negative = np.sort(np.asarray(negative))[::-1]
    allowed = int(math.floor(fpr * len(negative)))
    threshold = negative[allowed] if allowed < len(negative) else -np.inf
    return float((np.asarray(positive) > threshold).mean())

