"""Behaviour tests: what each method must do, checked on the tiny digits cell."""

import copy

import pytest
import torch
from torch import nn

from unlearn_bench.cache import ModelCache
from unlearn_bench.methods import METHODS
from unlearn_bench.methods.rl import random_labels
from unlearn_bench.methods.salun import saliency_mask
from unlearn_bench.run import prepare, reference_models


@pytest.fixture
def cell_and_models(make_cfg, tmp_path):
    def _make(*overrides):
        cfg = make_cfg(*overrides)
        cache = ModelCache(tmp_path / "cache")
        cell = prepare(cfg, cache.root)
        models, metas = reference_models(cell, cache)
        cell.ctx.extras["retrain"] = (models["retrain"], metas["retrain"])
        return cell, models
    return _make


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
    assert all(torch.equal(mask[k], cell.ctx.extras["saliency_mask"][k]) for k in mask)  # mask is deterministic
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
    assert cell.ctx.extras["charged_seconds"] > 0


@pytest.mark.parametrize("mode", ["any", "wrong"])
def test_random_labels(mode):
    torch.manual_seed(0)
    labels = torch.arange(1000) % 10
    relabelled = random_labels(labels, 10, mode)
    assert relabelled.min() >= 0 and relabelled.max() < 10
    same = (relabelled == labels).float().mean().item()
    assert (same == 0.0) if mode == "wrong" else (0.03 < same < 0.2)
