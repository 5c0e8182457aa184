"""Behaviour tests: what each method must do, checked on the tiny digits cell."""

import copy

import pytest
import torch
from torch import nn

from unlearn_bench.methods import METHODS
from unlearn_bench.methods.rl import random_labels
from unlearn_bench.methods.salun import saliency_mask


def forget_loss(model, cell):
    model.eval()
    with torch.no_grad():
        x = cell.ctx.inputs(cell.splits.forget.images, augment=False)
        return nn.functional.cross_entropy(model(x), cell.splits.forget.labels).item()


def test_salun_masked_out_weights_stay_bit_identical(cell_and_models):
    cell, models = cell_and_models("method=salun", "method.epochs=2", "method.lr=0.05")
    original = models["original"]
    mask = saliency_mask(copy.deepcopy(original), cell.splits, cell.cfg.method.mask_ratio,
                         cell.cfg.method.batch_size, cell.ctx)
    unlearned = METHODS.get("salun")(copy.deepcopy(original), cell.splits, cell.cfg.method, cell.ctx)
    assert all(torch.equal(mask[k], cell.ctx.report.diagnostics["saliency_mask"][k]) for k in mask)  # mask is deterministic
    before, after = dict(original.named_parameters()), dict(unlearned.named_parameters())
    moved_in_mask = 0
    for name, m in mask.items():
        frozen = m == 0
        assert torch.equal(before[name][frozen], after[name][frozen]), name
        moved_in_mask += int((before[name][~frozen] != after[name][~frozen]).sum())
    assert moved_in_mask > 0  # the salient weights did move


def test_salun_mask_keeps_the_given_ratio(cell_and_models):
    cell, models = cell_and_models()
    for ratio in (0.1, 0.5, 0.9):
        mask = saliency_mask(copy.deepcopy(models["original"]), cell.splits, ratio, 64, cell.ctx)
        total = sum(m.numel() for m in mask.values())
        kept = sum(int(m.sum()) for m in mask.values())
        assert kept == round(ratio * total)


def test_ga_raises_the_forget_loss(cell_and_models):
    cell, models = cell_and_models("method=ga", "method.lr=0.05", "method.epochs=3")
    before = forget_loss(models["original"], cell)
    unlearned = METHODS.get("ga")(copy.deepcopy(models["original"]), cell.splits, cell.cfg.method, cell.ctx)
    assert forget_loss(unlearned, cell) > 2 * before


def test_ft_changes_weights_and_keeps_retain_accuracy(cell_and_models):
    cell, models = cell_and_models("method=ft")
    unlearned = METHODS.get("ft")(copy.deepcopy(models["original"]), cell.splits, cell.cfg.method, cell.ctx)
    assert any(not torch.equal(a, b) for a, b in zip(models["original"].parameters(), unlearned.parameters()))


def test_retrain_method_returns_the_retrain_model(cell_and_models):
    cell, models = cell_and_models("method=retrain")
    out = METHODS.get("retrain")(copy.deepcopy(models["original"]), cell.splits, cell.cfg.method, cell.ctx)
    assert all(torch.equal(a, b) for a, b in zip(out.state_dict().values(), models["retrain"].state_dict().values()))
    assert cell.ctx.report.charged_seconds > 0


@pytest.mark.parametrize("mode", ["any", "wrong"])
def test_random_labels(mode):
    torch.manual_seed(0)
    labels = torch.arange(1000) % 10
    relabelled = random_labels(labels, 10, mode)
    assert relabelled.min() >= 0 and relabelled.max() < 10
    same = (relabelled == labels).float().mean().item()
    assert (same == 0.0) if mode == "wrong" else (0.03 < same < 0.2)


def test_iu_moves_the_weights_by_alpha_times_inverse_hvp_in_one_step(cell_and_models):
    from unlearn_bench.methods.iu import influence_perturbation

    cell, models = cell_and_models("method=iu", "method.num_samples=50")
    original = models["original"]
    expected = influence_perturbation(copy.deepcopy(original), cell.splits, cell.cfg.method, cell.ctx)
    unlearned = METHODS.get("iu")(copy.deepcopy(original), cell.splits, cell.cfg.method, cell.ctx)
    delta = torch.cat([(a - b).flatten() for a, b in zip(unlearned.parameters(), original.parameters())])
    assert expected.norm() > 0
    assert torch.allclose(delta, expected, atol=1e-6)


def test_iu_exact_recursion_matches_a_dense_inverse(cell_and_models):
    from unlearn_bench.methods.iu import sample_gradients, woodfisher_inverse_hvp

    cell, models = cell_and_models("method=iu")
    model = models["original"]
    n = 6
    v = torch.randn(sum(p.numel() for p in model.parameters()))
    result = woodfisher_inverse_hvp(model, cell.splits.retain, v, n, "exact", cell.ctx)
    grads = torch.stack(list(sample_gradients(model, cell.splits.retain, n, cell.ctx))).double()
    # (I + G^T G / N)^-1 v by the Woodbury identity, in the small N x N space
    small = torch.eye(n, dtype=torch.double) * n + grads @ grads.T
    dense = v.double() - grads.T @ torch.linalg.solve(small, grads @ v.double())
    assert torch.allclose(result.double(), dense, rtol=1e-3, atol=1e-5)


def test_l1_sparse_raises_the_share_of_near_zero_weights(cell_and_models):
    cell, models = cell_and_models("method=l1_sparse", "method.gamma=0.05", "method.epochs=3")
    def near_zero(model):
        w = torch.cat([p.detach().abs().flatten() for p in model.parameters()])
        return (w < 1e-2).float().mean().item()
    ft_cfg = cell.cfg.method.copy()
    ft_cfg.gamma = 0.0
    plain = METHODS.get("l1_sparse")(copy.deepcopy(models["original"]), cell.splits, ft_cfg, cell.ctx)
    sparse = METHODS.get("l1_sparse")(copy.deepcopy(models["original"]), cell.splits, cell.cfg.method, cell.ctx)
    assert near_zero(sparse) > near_zero(plain) + 0.02


def test_boundary_expanding_ends_with_the_original_outputs(cell_and_models):
    cell, models = cell_and_models("method=boundary_expanding", "method.lr=0.01")
    original = models["original"]
    unlearned = METHODS.get("boundary_expanding")(copy.deepcopy(original), cell.splits, cell.cfg.method,
                                                  cell.ctx)
    assert unlearned.get_classifier().out_features == cell.ctx.num_classes
    x = cell.ctx.inputs(cell.splits.forget.images[:8], augment=False)
    assert unlearned(x).shape == (8, cell.ctx.num_classes)
    assert not torch.equal(unlearned.get_classifier().weight, original.get_classifier().weight)


def test_boundary_shrink_relabels_to_other_classes(cell_and_models):
    cell, models = cell_and_models("method=boundary_shrink", "method.epsilon=0.3")
    METHODS.get("boundary_shrink")(copy.deepcopy(models["original"]), cell.splits, cell.cfg.method, cell.ctx)
    counts = cell.ctx.report.diagnostics["relabel_counts"]
    assert counts["total"] == len(cell.splits.forget)
    assert counts["changed"] / counts["total"] > 0.5


@pytest.mark.parametrize("discretize", [True, False])
def test_boundary_shrink_neighbour_lies_on_the_pixel_grid_when_discretized(cell_and_models, discretize):
    """The reference rounds the FGSM neighbour to k/255 (`discretize`); the switch turns it off."""
    from unlearn_bench.methods.boundary_shrink import fgsm_neighbour_labels

    cell, models = cell_and_models("method=boundary_shrink")
    ctx, seen = cell.ctx, []
    frozen = copy.deepcopy(models["original"]).eval()

    def recording(x):
        seen.append(x.detach() * ctx.std + ctx.mean)  # back to [0, 1] pixel space
        return frozen(x)

    unit = cell.splits.forget.images[:16].float() / 255
    fgsm_neighbour_labels(recording, unit, cell.splits.forget.labels[:16], 0.0123, ctx, discretize)
    steps = seen[-1] * 255
    on_grid = torch.allclose(steps, steps.round(), atol=1e-3)
    assert on_grid == discretize


def test_rate_dependent_learning_rate_of_the_boundary_methods(make_cfg):
    assert make_cfg("method=boundary_shrink", tiny=False).method.lr == 1e-6
    assert make_cfg("method=boundary_shrink", "forget_rate=random_50", tiny=False).method.lr == 5e-6
    assert make_cfg("method=boundary_expanding", "forget_rate=class", tiny=False).method.lr == 1e-6


@pytest.mark.parametrize("method", ["retrain", "ft", "rl", "ga", "salun", "iu", "l1_sparse",
                                    "boundary_expanding", "boundary_shrink"])
def test_every_method_runs_class_wise(make_cfg, method):
    from unlearn_bench.run import run

    record = run(make_cfg(f"method={method}", "forget_rate=class", "forget_rate.class_id=1",
                          ))
    assert {"UA", "RA", "TA", "MIA", "forget_TA", "avg_gap"} <= set(record["metrics"])


@pytest.mark.parametrize("method", ["ga", "boundary_expanding", "boundary_shrink"])
def test_bn_eval_keeps_the_batch_norm_statistics_of_methods_that_train_on_d_f(cell_and_models, method):
    """bn=train (the reference's model.train()) re-estimates batch-norm statistics on D_f batches; in
    class-wise forgetting that alone moves the model. bn=eval keeps θ_o's."""
    for bn, same in (("eval", True), ("train", False)):
        cell, models = cell_and_models(f"method={method}", "forget_rate=class", f"method.bn={bn}")
        unlearned = METHODS.get(method)(copy.deepcopy(models["original"]), cell.splits, cell.cfg.method, cell.ctx)
        stats = [(name, a, b) for (name, a), b in zip(models["original"].named_buffers(), unlearned.buffers())
                 if "running" in name]
        assert stats and all(torch.equal(a, b) for _, a, b in stats) == same, (method, bn)
