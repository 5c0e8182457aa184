"""Pool scores (docs/pools.md) on cases with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from unlearn_bench.metrics import pool


def test_logit_scaled_confidence_and_margin_on_a_known_example():
    logits = np.array([[2.0, 0.0, 0.0]])
    # p_y = e² / (e² + 2), the rest 2 / (e² + 2): s = log(e² / 2) = 2 − ln 2; the margin is the same quantity
    assert pool.logit_scaled_confidence(logits, np.array([0]))[0] == pytest.approx(2 - math.log(2))
    assert pool.margins(logits, np.array([0]))[0] == pytest.approx(2 - math.log(2))
    assert pool.margins(logits, np.array([1]))[0] == pytest.approx(0 - math.log(math.exp(2) + 1))


def test_identical_pools_give_epsilon_zero_and_the_maximal_score():
    conf = np.random.default_rng(0).normal(size=(16, 50))
    assert np.all(pool.example_epsilons(conf, conf) == 0.0)
    assert pool.forgetting_quality(conf, conf) == 1.0


def test_separable_pools_give_the_cap_and_score_zero():
    rng = np.random.default_rng(1)
    unlearned, retrained = rng.normal(size=(16, 50)), rng.normal(size=(16, 50)) + 100.0
    assert np.all(pool.example_epsilons(unlearned, retrained) == pool.EPSILON_CAP)
    assert pool.forgetting_quality(unlearned, retrained) == 0.0


def test_a_deterministic_method_gets_the_cap_everywhere():
    rng = np.random.default_rng(2)
    retrained = rng.normal(size=(16, 40))
    unlearned = np.tile(retrained.mean(axis=0), (16, 1))  # every run identical: a spread of 0
    assert np.all(pool.example_epsilons(unlearned, retrained) == pool.EPSILON_CAP)
    assert pool.forgetting_quality(unlearned, retrained) == 0.0


def reference_confidence(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """A transcription of compute_logit_scaled_confidence (google-deepmind/unlearning_evaluation, metric.py
    @ ffae0ff): the true class's probability is zeroed before the wrong-class mass is summed."""
    count = logits.shape[0]
    logits = logits - np.max(logits, axis=1, keepdims=True)
    probs = np.array(np.exp(logits), dtype=np.float64)
    probs /= np.sum(probs, axis=1, keepdims=True)
    prob_correct = probs[np.arange(count), targets[:count]].copy()
    probs[np.arange(count), targets[:count]] = 0
    prob_wrong = np.sum(probs, axis=1)
    return np.log(prob_correct + 1e-45) - np.log(prob_wrong + 1e-45)


def test_confident_models_keep_their_confidence_instead_of_saturating():
    """s from 0 to 90: Σ p − p_y cancels to 0 past s ≈ 36 and would give log 1e45 ≈ 103.6 every time."""
    targets = np.zeros(91, dtype=int)
    s = np.arange(91, dtype=np.float64)
    logits = np.zeros((91, 10))
    logits[:, 0] = s + math.log(9)  # nine wrong logits at 0: s = logit_y − log 9 exactly
    ours = pool.logit_scaled_confidence(logits, targets)
    np.testing.assert_allclose(ours, reference_confidence(logits, targets), rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours, s, rtol=0, atol=1e-5)  # 1e-45 inside the log moves s = 90 by 1e-6
    for value in (37.8, 57.8, 87.8):  # the values at which Σ p − p_y gives 103.6
        one = np.array([[value + math.log(9)] + [0.0] * 9])
        assert pool.logit_scaled_confidence(one, np.array([0]))[0] == pytest.approx(value, abs=1e-6)
    # A pool of confident models is not constant: its spread survives, so ε is not the cap by construction.
    rng = np.random.default_rng(9)
    confident = rng.uniform(40, 80, (16, 1)) + np.log(9)
    pool_logits = np.concatenate([confident, np.zeros((16, 9))], axis=1)[:, None, :]  # [N, 1 example, C]
    conf = pool.logit_scaled_confidence(pool_logits, np.array([0]))
    assert np.ptp(conf) > 30


def reference_epsilon(pos: np.ndarray, neg: np.ndarray, delta: float = pool.DELTA) -> float:
    """A transcription of _get_epsilons for one example (metric.py @ ffae0ff), numpy instead of CUDA: both
    decision-rule families on the reference's 0.01 grid, perfect separation ∞, a rate pair with exactly one
    error rate 0 dropped, the largest ε, clipped to [0, 50]."""
    largest, smallest = max(np.ptp(pos), np.ptp(neg)), min(np.ptp(pos), np.ptp(neg))
    if smallest / largest < 0.01:
        return pool.EPSILON_CAP
    # double threshold: positive = the peakier distribution, inside [l, r]
    p, q = (neg, pos) if np.ptp(pos) >= np.ptp(neg) else (pos, neg)
    buffer, width = 2.0, smallest
    low, high = p.min() + width - buffer, p.max() + buffer
    right = np.linspace(low, high, num=int(np.ceil((high - low) * 100)))
    n_left = int(np.ceil(2 * buffer * 100))
    left = np.concatenate([np.linspace(r - width - buffer, r - width + buffer, num=n_left) for r in right])
    right = np.repeat(right, n_left)
    tpr_d = ((left[None] <= p[:, None]) & (p[:, None] <= right[None])).mean(0)
    fpr_d = ((left[None] <= q[:, None]) & (q[:, None] <= right[None])).mean(0)
    # single threshold: positive at or above t
    both = np.concatenate([pos, neg])
    thresholds = torch.linspace(both.min(), both.max(), int(np.ceil((both.max() - both.min()) * 100)),
                                dtype=torch.float64).numpy()
    tpr_s = (pos[:, None] >= thresholds[None]).mean(0)
    fpr_s = (neg[:, None] >= thresholds[None]).mean(0)
    tpr, fpr = np.concatenate([tpr_d, tpr_s]), np.concatenate([fpr_d, fpr_s])
    fnr, tnr = 1 - tpr, 1 - fpr
    eps = np.where((fpr + fnr == 0) & (tpr + tnr == 2), np.inf, 0.0)
    eps = np.where((eps == 0) & (fpr * fnr == 0), np.nan, eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.clip(np.nanmax([np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr)],
                                   axis=0), 0, None)
    eps = np.where(eps == 0, values, eps)
    return float(np.clip(np.nanmax(eps), 0, pool.EPSILON_CAP))


def reference_pair(unlearned: np.ndarray, retrained: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    retrain_positive = np.median(retrained, axis=0) > np.median(unlearned, axis=0)
    return (np.where(retrain_positive, retrained, unlearned), np.where(retrain_positive, unlearned, retrained))


@pytest.mark.parametrize(("n_models", "sd", "shift"), [(8, 5.0, 2.0), (16, 8.0, 0.0), (6, 3.0, 4.0),
                                                      (16, 0.01, 0.005), (16, 0.005, 0.0), (8, 0.012, 0.01)])
def test_the_grid_is_the_reference_at_wide_and_narrow_spreads(n_models, sd, shift):
    """rates=grid (the default) gives the transcribed reference's ε, also for pools spread over 0.02–0.05;
    rates=samples agrees on wide pools only, and is never below the grid (it tries every cut the grid can)."""
    rng = np.random.default_rng(n_models + int(sd * 1000))
    unlearned = rng.normal(0.0, sd, (n_models, 40))
    retrained = rng.normal(shift, sd * rng.uniform(0.5, 1.5), (n_models, 40))
    pos, neg = reference_pair(unlearned, retrained)
    expected = [reference_epsilon(pos[:, i], neg[:, i]) for i in range(40)]
    on_grid = pool.example_epsilons(unlearned, retrained)
    np.testing.assert_allclose(on_grid, expected, rtol=0, atol=1e-9)
    at_samples = pool.example_epsilons(unlearned, retrained, rates="samples")
    assert np.all(at_samples >= on_grid - 1e-12)
    if sd >= 1:
        np.testing.assert_allclose(at_samples, on_grid, rtol=0, atol=1e-12)


def test_narrow_pools_score_higher_on_the_grid_than_at_the_samples():
    """The measured case: spreads of 0.02–0.05 at N = 16. Cutting between every pair of samples finds rate
    pairs the 0.01 grid cannot, so ε rises and F falls: the two are not the same estimator."""
    rng = np.random.default_rng(16)
    unlearned, retrained = rng.normal(0.0, 0.01, (16, 80)), rng.normal(0.004, 0.01, (16, 80))
    grid, samples = (pool.forgetting_quality(unlearned, retrained, rates=r) for r in ("grid", "samples"))
    assert grid > samples + 0.02


def test_bucket_points_follow_the_challenge():
    # N = 32: bins of 0.5 up to ceil(ln 31) = 4, bin k earns 2^-k, beyond the last bin 0
    eps = np.array([0.0, 0.49, 0.5, 1.2, 3.9, 4.0, 50.0])
    assert list(pool.bucket_points(eps, 32)) == [1.0, 1.0, 0.5, 0.25, 2.0 ** -7, 0.0, 0.0]
    assert pool.final_score(0.5, 90.0, 100.0, 80.0, 100.0) == pytest.approx(0.36)


def test_binned_kl_matches_the_reference_formula():
    rng = np.random.default_rng(3)
    p, q = rng.normal(0, 1, (20, 30)), rng.normal(0.5, 2, (20, 30))
    expected = []
    for i in range(30):  # data-unlearning-bench's compute_binned_KL_div, example by example
        a, b = np.clip(p[:, i], -100, 100), np.clip(q[:, i], -100, 100)
        bins = np.linspace(min(a.min(), b.min()), max(a.max(), b.max()), 21)
        pa = np.array([np.sum(np.digitize(a, bins) == k) for k in range(1, 21)]) / 1.0
        qb = np.array([np.sum(np.digitize(b, bins) == k) for k in range(1, 21)]) / 1.0
        pa, qb = pa / pa.sum(), qb / qb.sum()
        expected.append(stats.entropy(pk=pa, qk=np.where(pa > 0, np.maximum(qb, 1e-5), qb)))
    np.testing.assert_allclose(pool.binned_kl(p, q, top_edge="reference"), expected, rtol=1e-10, atol=1e-12)


def test_a_constant_pool_at_the_top_of_the_range_is_scored_not_dropped():
    """Doing nothing on a forget example the original fits best: its margins are all the range's maximum.
    With the top bin closed it is as far from the retrain pool as its bin's share says; the reference's
    np.digitize counts none of its samples (NaN)."""
    retrained = np.random.default_rng(5).normal(0.0, 1.0, (16, 3))
    constant = np.full((16, 3), retrained.max() + 5.0)
    closed = pool.binned_kl(constant, retrained)
    assert np.all(closed > 5.0)  # p = one bin the retrain pool hardly reaches: KL ≈ log(1 / 1e-5)
    assert np.all(np.isnan(pool.binned_kl(constant, retrained, top_edge="reference")))
    assert pool.klom(constant, retrained, top_edge="reference", direction="unlearned_first")["unscored"] == 3
    # In the reference pipeline's direction the constant pool is the second argument: its uncounted samples
    # leave q empty, floored at 1e-5 wherever the retrain pool has mass, and the example is scored.
    assert pool.klom(constant, retrained, top_edge="reference")["unscored"] == 0
    # The range's maximum is always a sample: the reference leaves one sample of every example uncounted.
    same = pool.binned_kl(retrained, retrained, top_edge="reference")
    assert np.all(same == 0.0) and np.all(pool.binned_kl(retrained, retrained) == 0.0)


def test_klom_runs_in_the_reference_pipelines_direction_by_default():
    """KL(retrain ‖ unlearned) by default; the other direction is a switch. A narrow unlearned pool inside a
    wide retrain pool: most retrain mass falls where the unlearned pool has none (floored at 1e-5, large KL),
    while the unlearned pool's one bin holds retrain mass (small KL)."""
    rng = np.random.default_rng(6)
    retrained = rng.normal(0.0, 3.0, (32, 20))
    unlearned = rng.normal(0.0, 0.05, (32, 20))
    default = pool.klom(unlearned, retrained)["mean"]
    assert default == pytest.approx(float(pool.binned_kl(retrained, unlearned).mean()))
    other = pool.klom(unlearned, retrained, direction="unlearned_first")["mean"]
    assert other == pytest.approx(float(pool.binned_kl(unlearned, retrained).mean()))
    assert default > other + 2  # the retrain pool's stray mass counts against a too-narrow unlearned pool
    with pytest.raises(ValueError, match="direction"):
        pool.klom(unlearned, retrained, direction="both")


def test_klom_of_a_pool_against_itself_is_zero():
    margins = np.random.default_rng(4).normal(size=(16, 100))
    result = pool.klom(margins, margins)
    assert result["mean"] == pytest.approx(0.0, abs=1e-12) and result["p95"] == pytest.approx(0.0, abs=1e-12)


def test_the_attack_cannot_tell_two_pools_of_one_distribution_apart():
    rng = np.random.default_rng(5)
    aucs = [pool.likelihood_ratio_attack(rng.normal(size=(16, 200)), rng.normal(size=(16, 200)))["auc"]
            for _ in range(20)]
    assert abs(np.mean(aucs) - 0.5) < 0.06
    separated = pool.likelihood_ratio_attack(rng.normal(size=(16, 200)), rng.normal(size=(16, 200)) + 1.0)
    assert separated["auc"] == 1.0 and separated["tpr_at_fpr"] == 1.0


def test_every_score_is_registered_with_its_source():
    for name in ("forgetting_quality", "klom", "lira"):
        doc = pool.POOL_SCORES.get(name).__doc__
        assert doc and ("metric.py" in doc or "eval.py" in doc or "docs/" in doc)


def test_the_pool_tables_tau_is_taken_per_forget_set_and_names_the_rows_it_cannot_order():
    """τ between the final-score and Avg Gap rankings, forget set by forget set, over the methods scored on
    every set; rows tied at the lowest final score are named (τ-b cannot order them). Known answer: scores
    (0.3, 0.2, 0, 0) against gaps (1, 2, 3, 4) give 5 concordant pairs, one tie in the scores, τ-b = 5 / √30."""
    import pandas as pd

    from unlearn_bench.report.pools import tau_over_forget_sets

    def rows(scores: list[float], gaps: list[float], seeds: tuple[int, ...] = (0, 1, 2)) -> pd.DataFrame:
        return pd.DataFrame({"seed": list(seeds), "final_score": scores, "avg_gap": gaps})

    by_method = {"a": rows([0.3] * 3, [1.0] * 3), "b": rows([0.2] * 3, [2.0] * 3),
                 "c": rows([0.0] * 3, [3.0, 4.0, 3.0]), "d": rows([0.0] * 3, [4.0, 3.0, 4.0]),
                 "partial": rows([0.9], [0.5], seeds=(0,))}  # one forget set only: left out
    found = tau_over_forget_sets(by_method, list(by_method))
    assert found["n"] == 3 and found["methods"] == 4
    assert found["mean"] == pytest.approx(5 / math.sqrt(30)) and found["half"] == pytest.approx(0.0, abs=1e-12)
    assert found["tied_lowest"] == ["c", "d"]
    assert tau_over_forget_sets({k: by_method[k] for k in ("a", "b", "partial")}, ["a", "b", "partial"]) == {}


def test_the_pool_table_reads_each_method_against_both_references_in_three_outcomes():
    """Against the held-out retrain pool and doing nothing, every method is below / above, equivalent within δ
    (half the distance between the two references: 0.1 here) or undecided, Holm-corrected over the methods;
    the tests against the best state the smallest difference they could detect."""
    import pandas as pd

    from unlearn_bench.report.pools import pool_statistics
    from unlearn_bench.report.records import FLOOR, ORIGINAL

    scores = {FLOOR: [0.20, 0.19, 0.21], ORIGINAL: [0.0, 0.0, 0.0],
              "near_floor": [0.199, 0.192, 0.206], "near_nothing": [0.0, 0.02, 0.004], "noisy": [0.0, 0.2, 0.1]}
    part = pd.DataFrame([{"method": m, "seed": s, "final_score": v, "reference": m in (FLOOR, ORIGINAL),
                          "diverged": False} for m, values in scores.items() for s, v in enumerate(values)])
    table, stats = pool_statistics(part)
    row = table.set_index("method")
    assert stats["margin"] == pytest.approx(0.1)
    assert row.loc["near_floor", "vs_floor"] == "equivalent" and row.loc["near_floor", "vs_nothing"] == "above"
    assert row.loc["near_nothing", "vs_floor"] == "below" and row.loc["near_nothing", "vs_nothing"] == "equivalent"
    assert row.loc["noisy", "vs_floor"].startswith("undecided at n = 3")
    assert row.loc["noisy", "vs_nothing"].startswith("undecided at n = 3")
    assert stats["best"] == "near_floor" and row.loc["noisy", "tied_with_best"]
    low, high = stats["detectable"]
    assert 0 < low <= high and row.loc["noisy", "detectable_vs_best"] == pytest.approx(high)
