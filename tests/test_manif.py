"""ManiF-SMC: neighbour search, frozen Bézier end points, the effect of each switch."""

import copy

import pytest
import torch
from omegaconf import OmegaConf

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
                          per_sample(cell.cfg.method, "bezier"), cell.ctx)
    after = [*theta_u.parameters(), *theta_o.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert any(not torch.equal(a, b) for a, b in zip(fresh_before, fresh.parameters()))  # w was trained
    for p_phi, p_u, p_o, p_w in zip(phi.parameters(), theta_u.parameters(), theta_o.parameters(), fresh.parameters()):
        assert torch.allclose(p_phi, 0.25 * p_u + 0.5 * p_w + 0.25 * p_o, atol=1e-6)


def per_sample(base, smc: str, direction: str = "away", **keys):
    """The method config of variant=per_sample with `smc` / `direction` and exactly the keys they read."""
    cfg = base.copy()
    cfg.variant, cfg.loss_scale, cfg.t, cfg.smc, cfg.direction = "per_sample", None, None, smc, direction
    cfg.margin = 1.0 if smc == "fixed" else None
    cfg.smc_epochs, cfg.smc_lr, cfg.smc_batch_size = (1, 1e-3, 64) if smc == "bezier" else (None, None, None)
    for key, value in keys.items():
        cfg[key] = value
    return cfg


def run_manif(cell, original, cfg):
    cell.ctx.report.diagnostics.clear()
    model = METHODS.get("manif_smc")(copy.deepcopy(original), cell.splits, cfg, cell.ctx)
    return model, cell.ctx.report.diagnostics["margins"]


def test_smc_switch_changes_the_margins(manif_cell):
    cell, original = manif_cell()
    base = cell.cfg.method
    _, fixed = run_manif(cell, original, per_sample(base, "fixed", margin=0.7))
    _, blend = run_manif(cell, original, per_sample(base, "blend"))
    _, bezier = run_manif(cell, original, per_sample(base, "bezier"))
    assert torch.all(fixed == 0.7)
    assert blend.std() > 0 and bezier.std() > 0  # adaptive: one margin per erased sample
    assert not torch.allclose(blend, bezier)


def test_direction_switch_moves_erased_features_opposite_ways(manif_cell):
    from unlearn_bench.methods.manif_smc import sq_dist
    from unlearn_bench.metrics.core import features_of

    cell, original = manif_cell()
    anchors_model = copy.deepcopy(original)
    f_forget = features_of(anchors_model, cell.splits.forget, cell.ctx)
    f_retain = features_of(anchors_model, cell.splits.retain, cell.ctx)
    index = chunked_knn(f_forget, f_retain, 5, 10**6)
    anchors = f_retain[index].mean(1)
    distance = {}
    for direction in ("away", "toward"):
        cfg = per_sample(cell.cfg.method, "fixed", direction, margin=5.0, epochs=3, lr=0.005)
        model, _ = run_manif(cell, original, cfg)
        distance[direction] = sq_dist(anchors, features_of(model, cell.splits.forget, cell.ctx)).mean().item()
    assert distance["away"] > distance["toward"]


def test_bad_switch_values_name_the_key(manif_cell):
    cell, original = manif_cell()
    base = cell.cfg.method
    with pytest.raises(ConfigError, match="method.direction"):
        run_manif(cell, original, per_sample(base, "blend", "sideways"))
    with pytest.raises(ConfigError, match="method.smc"):
        run_manif(cell, original, per_sample(base, "cubic"))
    with pytest.raises(ConfigError, match="method.variant"):
        run_manif(cell, original, per_sample(base, "blend", variant="both"))


def test_a_key_the_variant_does_not_read_is_refused(manif_cell):
    """published reads no per_sample switch; per_sample reads neither loss_scale nor t; margin only with
    smc=fixed; the control-point keys only with smc=bezier."""
    from unlearn_bench.methods.manif_smc import check_manif_smc

    cell, _ = manif_cell()
    base = cell.cfg.method
    check_manif_smc(base)  # the default (published) is consistent
    for smc in ("bezier", "blend", "fixed"):
        check_manif_smc(per_sample(base, smc))
    published_with_switch = base.copy()
    published_with_switch.smc = "blend"
    cases = [(published_with_switch, "method.smc='blend'"), (per_sample(base, "blend", t=0.5), "method.t=0.5"),
             (per_sample(base, "bezier", margin=1.0), "method.margin=1.0"),
             (per_sample(base, "fixed", smc_lr=0.1), "method.smc_lr=0.1")]
    for cfg, message in cases:
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
            check_manif_smc(cfg)


def reference_loss(z, z_p, logits_p, centres, alpha, labels):
    """The published batch loss written as the reference writes it (unlearning_with_topk)."""
    F = torch.nn.functional
    loss = 0.1 * (F.mse_loss(z_p, centres) - F.mse_loss(z, centres) + alpha + F.cross_entropy(logits_p, labels))
    return torch.clamp(loss, min=0).mean()


def test_published_loss_is_the_reference_batch_hinge_with_the_ce_term(manif_cell):
    from unlearn_bench.methods.manif_smc import published_loss

    cell, original = manif_cell()
    model = copy.deepcopy(original).train()
    x = cell.ctx.inputs(cell.splits.forget.images[:4], augment=False)
    x_p = cell.ctx.inputs(cell.splits.retain.images[:4], augment=False)
    labels = cell.splits.forget.labels[:4]
    torch.manual_seed(0)
    with torch.no_grad():
        z = model.forward_head(model.forward_features(x), pre_logits=True)
        z_p = model.forward_head(model.forward_features(x_p), pre_logits=True)
        logits_p = model.forward_head(model.forward_features(x_p))
    centres = torch.nn.functional.normalize(torch.randn_like(z), dim=1)
    for alpha in (torch.tensor(0.3), torch.tensor(-1e6)):  # inside the hinge, then clamped to 0
        got = published_loss(model, x, x_p, labels, centres, alpha, 0.1)
        expected = reference_loss(z, z_p, logits_p, centres, alpha, labels)
        assert got.dim() == 0 and torch.allclose(got, expected, atol=1e-5)
    assert published_loss(model, x, x_p, labels, centres, torch.tensor(-1e6), 0.1).item() == 0.0
    # the CE term is on the positive's logits against the erased samples' labels: other labels, other loss
    other = (labels + 1) % cell.ctx.num_classes
    assert not torch.allclose(published_loss(model, x, x_p, other, centres, torch.tensor(100.0), 0.1),
                              published_loss(model, x, x_p, labels, centres, torch.tensor(100.0), 0.1))


def test_published_phi_blends_parameters_and_keeps_the_buffers(manif_cell):
    from unlearn_bench.methods.manif_smc import published_phi

    cell, original = manif_cell()
    model = copy.deepcopy(original).train()
    fresh = cell.ctx.new_model()
    phi = published_phi(model, fresh, 0.5)
    for p_phi, p_model, p_fresh in zip(phi.parameters(), model.parameters(), fresh.parameters()):
        assert torch.allclose(p_phi, 0.5 * p_model + 0.5 * p_fresh, atol=1e-6)
    buffers = dict(model.named_buffers())
    assert any(not torch.equal(b, dict(fresh.named_buffers())[n]) for n, b in buffers.items() if b.is_floating_point())
    assert all(torch.equal(b, buffers[n]) for n, b in phi.named_buffers())  # BN statistics: the model's own
    assert phi.training == model.training


def test_published_variant_uses_normalised_centres_the_top1_positive_and_a_margin_per_batch(manif_cell, monkeypatch):
    """Each batch's centres are the mean of the L2-normalised θ_o features of the k nearest retained samples,
    its positives the top-1 neighbour, and its α is recomputed from the current model at that batch."""
    from unlearn_bench.methods import manif_smc as module

    cell, original = manif_cell()
    cfg = cell.cfg.method.copy()
    cfg.epochs, cfg.batch_size = 1, 8
    f_forget = module.features_of(original, cell.splits.forget, cell.ctx)
    f_retain = module.features_of(original, cell.splits.retain, cell.ctx)
    sims = torch.nn.functional.normalize(f_forget, dim=1) @ torch.nn.functional.normalize(f_retain, dim=1).T
    top = sims.topk(cfg.k, dim=1).indices
    expected_centres = torch.nn.functional.normalize(f_retain, dim=1)[top].mean(1)
    retain_inputs = cell.ctx.inputs(cell.splits.retain.images, augment=False)
    fresh_nets, seen = [], []
    new_model = cell.ctx.new_model

    def recording_new_model(*stage):
        fresh_nets.append(new_model(*stage))
        return copy.deepcopy(fresh_nets[-1])

    def recording_loss(model, x, x_p, labels, centres, alpha, loss_scale):
        phi = module.published_phi(model, fresh_nets[-1], 0.5)
        with torch.no_grad():
            ref = (torch.nn.functional.mse_loss(module.penultimate_features(phi, x), centres)
                   - torch.nn.functional.mse_loss(module.penultimate_features(phi, x_p), centres))
        seen.append((x_p.detach().clone(), centres.clone(), alpha.item(), ref.item()))
        return published_loss(model, x, x_p, labels, centres, alpha, loss_scale)

    published_loss = module.published_loss
    monkeypatch.setattr(cell.ctx, "new_model", recording_new_model)
    monkeypatch.setattr(module, "published_loss", recording_loss)
    monkeypatch.setattr(cell.ctx, "augment", lambda images: images)  # inputs comparable with the expected
    order = []
    batches = module.batch_indices

    def recording_batches(*args, **kwargs):
        for index in batches(*args, **kwargs):
            order.append(index.clone())
            yield index
    monkeypatch.setattr(module, "batch_indices", recording_batches)
    module.manif_smc(copy.deepcopy(original), cell.splits, cfg, cell.ctx)

    assert len(seen) == len(order) >= 3 and len(fresh_nets) == len(seen)  # a fresh network per batch
    for index, (x_p, centres, alpha, ref) in zip(order, seen):
        assert torch.allclose(centres, expected_centres[index], atol=1e-5)
        assert torch.allclose(x_p, retain_inputs[top[index, 0]], atol=1e-6)
        assert alpha == pytest.approx(ref, rel=1e-4, abs=1e-6)
    assert len({round(a, 6) for _, _, a, _ in seen}) == len(seen)  # recomputed, not one α for the run
    first = [p.detach().clone() for p in fresh_nets[0].parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(first, fresh_nets[1].parameters()))  # a new network each batch


@needs_shared_data("mnist.npz")
def test_manif_smc_runs_on_mnist(make_cfg):
    from unlearn_bench.run import run

    record = run(make_cfg("method=manif_smc", "dataset=mnist", "dataset.train_size=600", "dataset.test_size=200",
                          "forget_rate.rate=null", "forget_rate.count=50"))
    assert record["forget_size"] == 50 and "avg_gap" in record["metrics"]


def test_latent_probe_calls_member_like_latents_members(monkeypatch):
    """A known case: D's latents lie at +1, T's at −1; the probe fitted on them calls a model whose D_f
    latents lie at −1 non-member (100 %) and one whose D_f latents lie at +1 member (0 %)."""
    from unlearn_bench.data import ImageData, Splits
    from unlearn_bench.metrics import latent_probe

    def data(n, label):
        return ImageData(torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.full((n,), label))

    train, test = data(40, 0), data(30, 1)
    splits = Splits(train=train, forget=train.subset(torch.arange(10)), retain=train.subset(torch.arange(10, 40)),
                    test=test, forget_test=data(0, 0), forget_index=torch.arange(10), num_classes=2)

    def fake_features(model, images, ctx):  # the "model" is the sign of its D latents; T is always at −1
        sign = -1.0 if images.labels[:1].eq(1).all() and len(images) else model
        return torch.full((len(images), 4), sign) + 0.01 * torch.randn(len(images), 4)

    monkeypatch.setattr(latent_probe, "features_of", fake_features)
    probe_cfg = OmegaConf.create({"samples": 5000, "hidden": 8, "epochs": 30, "lr": 0.01, "batch_size": 8})
    probe = latent_probe.fit_latent_probe(1.0, splits.train, splits.test, None, probe_cfg, seed=0)
    assert latent_probe.latent_probe_mia(probe, -1.0, splits, None) == 100.0
    assert latent_probe.latent_probe_mia(probe, 1.0, splits, None) == 0.0


def test_latent_probe_config_is_checked_and_off_keeps_cell_ids(make_cfg):
    from unlearn_bench import tracking
    from unlearn_bench.validate import validate

    off = make_cfg("method=manif_smc")
    assert "latent_probe" not in tracking.cell_config(off)["metrics"]
    on = make_cfg("method=manif_smc", "metrics.latent_probe={samples: 100, hidden: 8, epochs: 1, lr: 0.001, batch_size: 16}")
    validate(on)
    assert tracking.cell_config(on)["metrics"]["latent_probe"]["samples"] == 100
    assert tracking.cell_id(on) != tracking.cell_id(off)
    bad = {"metrics.latent_probe={samples: 0, hidden: 8, epochs: 1, lr: 0.001, batch_size: 16}": "latent_probe.samples=0",
           "metrics.latent_probe={samples: 10, hidden: 8, epochs: 1, lr: 0.001, batch_size: 16, depth: 2}":
               "latent_probe.depth=2"}
    for override, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            validate(make_cfg("method=manif_smc", override))
    with pytest.raises(ConfigError, match="metrics.latent_probe"):
        validate(make_cfg("method=manif_smc", "eval=pool",
                          "metrics.latent_probe={samples: 10, hidden: 8, epochs: 1, lr: 0.001, batch_size: 16}"))


def test_a_cell_with_the_latent_probe_records_it_for_every_row(make_cfg):
    from unlearn_bench.run import run

    record = run(make_cfg("method=manif_smc",
                          "metrics.latent_probe={samples: 5000, hidden: 96, epochs: 1, lr: 5.0e-4, batch_size: 16}"))
    for stage in ("metrics", "retrain_metrics", "retrain2_metrics", "original_metrics"):
        assert 0.0 <= record[stage]["MIA_latent"] <= 100.0


def test_the_probe_draws_non_members_from_the_whole_test_split_and_never_from_d(make_cfg, monkeypatch):
    """The test images a test_size subset leaves out join T as non-members; D never does."""
    from unlearn_bench.metrics import latent_probe
    from unlearn_bench.run import run

    seen = {}
    fit = latent_probe.fit_latent_probe

    def recording(original, members, non_members, ctx, cfg, seed):
        seen["members"], seen["non_members"] = members, non_members
        return fit(original, members, non_members, ctx, cfg, seed)

    import unlearn_bench.evaluation.cell as classification

    monkeypatch.setattr(classification, "fit_latent_probe", recording)
    cfg = make_cfg("method=ga", "dataset.test_size=100",
                   "metrics.latent_probe={samples: 5000, hidden: 8, epochs: 1, lr: 1.0e-3, batch_size: 16}")
    run(cfg)
    from unlearn_bench.data import load_dataset

    dataset = load_dataset(cfg.dataset, cfg.paths.data_root)
    assert len(seen["non_members"]) == 100 + len(dataset.unused_test) > 100
    members = {bytes(x.cpu().numpy()) for x in seen["members"].images}
    assert not any(bytes(x.cpu().numpy()) in members for x in seen["non_members"].images)
