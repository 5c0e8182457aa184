"""Pool scores (SPEC §9) on cases with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from unlearn_bench.metrics import pool


def test_logit_scaled_confidence_and_margin_on_a_known_example():
    logits = np.array([[2.0, 0.0, 0.0]])
    # p_y = e² / (e² + 2), the rest 2 / (e² + 2): s = log(e² / 2) = 2 − ln 2; the margin is the same quantity
    assert pool.logit_scaled_confidence(logits, np.array([0]))[0] == pytest.approx(2 - math.log(2))
    assert pool.margins(logits, np.array([0]))[0] == pytest.approx(2 - math.log(2))
    assert pool.margins(logits, np.array([1]))[0] == pytest.approx(0 - math.log(math.exp(2) + 1))


def test_identical_pools_give_epsilon_zero_and_the_maximal_score():
    conf = np.random.default_rng(0).normal(size=(16, 200))
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


@pytest.mark.parametrize(("n_models", "sd", "shift"), [(8, 5.0, 2.0), (16, 8.0, 0.0), (6, 3.0, 4.0)])
def test_rates_at_sample_values_give_the_reference_grids_epsilon(n_models, sd, shift):
    rng = np.random.default_rng(n_models)
    unlearned = rng.normal(0.0, sd, (n_models, 40))
    retrained = rng.normal(shift, sd * rng.uniform(0.3, 1.5), (n_models, 40))
    at_samples = pool.example_epsilons(unlearned, retrained, rates="samples")
    on_grid = pool.example_epsilons(unlearned, retrained, rates="grid")
    np.testing.assert_allclose(at_samples, on_grid, rtol=0, atol=1e-12)


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
    assert pool.klom(constant, retrained, top_edge="reference")["unscored"] == 3
    # The range's maximum is always a sample: the reference leaves one sample of every example uncounted.
    same = pool.binned_kl(retrained, retrained, top_edge="reference")
    assert np.all(same == 0.0) and np.all(pool.binned_kl(retrained, retrained) == 0.0)


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
        assert doc and ("metric.py" in doc or "eval.py" in doc or "SPEC" in doc)
