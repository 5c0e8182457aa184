"""ManiF-SMC: neighbour search, frozen Bézier end points, the effect of each switch."""

import copy

import pytest
import torch

from unlearn_bench.cache import ModelCache
from unlearn_bench.errors import ConfigError
from unlearn_bench.methods import METHODS
from unlearn_bench.methods.manif_smc import bezier_midpoint, chunked_knn
from unlearn_bench.protocol import prepare, reference_models

from .conftest import needs_shared_data


@pytest.mark.parametrize("max_elements", [1, 7, 50, 10_000])
def test_chunked_knn_matches_brute_force(max_elements):
    torch.manual_seed(0)
    queries, keys = torch.randn(23, 6), torch.randn(41, 6)
    got = chunked_knn(queries, keys, 5, max_elements)
    sims = torch.nn.functional.normalize(queries, dim=1) @ torch.nn.functional.normalize(keys, dim=1).T
    expected = sims.topk(5, dim=1).indices
    assert torch.equal(got.sort(1).values, expected.sort(1).values)


def test_chunked_knn_rejects_k_larger_than_retain():
    with pytest.raises(ConfigError, match="method.k"):
        chunked_knn(torch.randn(3, 2), torch.randn(4, 2), 5, 100)


@pytest.fixture
def manif_cell(make_cfg, tmp_path):
    def _make(*overrides):
        cfg = make_cfg("method=manif_smc", *overrides)
        cache = ModelCache(tmp_path / "cache")
        cell = prepare(cfg, cache.root)
        models, _ = reference_models(cell, cache)
        return cell, models["original"]
    return _make


def test_bezier_control_point_trains_with_end_points_frozen(manif_cell):
    cell, original = manif_cell()
    theta_u, theta_o = copy.deepcopy(original), copy.deepcopy(original)
    before = [p.detach().clone() for p in [*theta_u.parameters(), *theta_o.parameters()]]
    fresh = cell.ctx.new_model()
    fresh_before = [p.detach().clone() for p in fresh.parameters()]
    phi = bezier_midpoint(theta_u, theta_o, fresh, cell.splits.retain.subset(torch.arange(200)),
                          cell.cfg.method, cell.ctx)
    after = [*theta_u.parameters(), *theta_o.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert any(not torch.equal(a, b) for a, b in zip(fresh_before, fresh.parameters()))  # w was trained
    for p_phi, p_u, p_o, p_w in zip(phi.parameters(), theta_u.parameters(), theta_o.parameters(), fresh.parameters()):
        assert torch.allclose(p_phi, 0.25 * p_u + 0.5 * p_w + 0.25 * p_o, atol=1e-6)


def run_manif(cell, original, **switches):
    cfg = cell.cfg.method.copy()
    for key, value in switches.items():
        cfg[key] = value
    cell.ctx.extras.clear()
    model = METHODS.get("manif_smc")(copy.deepcopy(original), cell.splits, cfg, cell.ctx)
    return model, cell.ctx.extras["margins"]


def test_smc_switch_changes_the_margins(manif_cell):
    cell, original = manif_cell()
    _, fixed = run_manif(cell, original, smc="fixed", margin=0.7)
    _, blend = run_manif(cell, original, smc="blend")
    _, bezier = run_manif(cell, original, smc="bezier")
    assert torch.all(fixed == 0.7)
    assert blend.std() > 0 and bezier.std() > 0  # adaptive: one margin per erased sample
    assert not torch.allclose(blend, bezier)


def test_direction_switch_moves_erased_features_opposite_ways(manif_cell):
    from unlearn_bench.methods.manif_smc import features_of, sq_dist

    cell, original = manif_cell("method.epochs=3", "method.lr=0.005")
    anchors_model = copy.deepcopy(original)
    f_forget = features_of(anchors_model, cell.splits.forget, cell.ctx)
    f_retain = features_of(anchors_model, cell.splits.retain, cell.ctx)
    index = chunked_knn(f_forget, f_retain, 5, 10**6)
    anchors = f_retain[index].mean(1)
    distance = {}
    for direction in ("away", "toward"):
        model, _ = run_manif(cell, original, smc="fixed", margin=5.0, direction=direction, epochs=3, lr=0.005)
        distance[direction] = sq_dist(anchors, features_of(model, cell.splits.forget, cell.ctx)).mean().item()
    assert distance["away"] > distance["toward"]


def test_bad_switch_values_name_the_key(manif_cell):
    cell, original = manif_cell()
    with pytest.raises(ConfigError, match="method.direction"):
        run_manif(cell, original, direction="sideways")
    with pytest.raises(ConfigError, match="method.smc"):
        run_manif(cell, original, smc="cubic")


@needs_shared_data("mnist.npz")
def test_manif_smc_runs_on_mnist(make_cfg):
    from unlearn_bench.run import run

    record = run(make_cfg("method=manif_smc", "dataset=mnist", "dataset.train_size=600", "dataset.test_size=200",
                          "forget_rate.count=50"))
    assert record["forget_size"] == 50 and "avg_gap" in record["metrics"]
