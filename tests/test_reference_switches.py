"""Each switch that reproduces a reference's behaviour by default and keeps the suite's earlier behaviour by
name: a test per switch that tells the two apart on the tiny digits cell, and the cell-id rule for switches
added after records existed."""

from __future__ import annotations

import copy

import torch
from omegaconf import OmegaConf

from unlearn_bench.data import ImageData
from unlearn_bench.methods import METHODS
from unlearn_bench.methods.rum import memorisation_thirds, not_reached, stratum_splits
from unlearn_bench.methods.salun import saliency_mask
from unlearn_bench.methods.scar import target_examples
from unlearn_bench.rng import seed_stage
from unlearn_bench.tracking import cell_config, cell_id


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_salun_mask_update_gradient_lets_decay_and_momentum_move_masked_out_weights(cell_and_models):
    """hold (SalUn's RL.py): a masked-out weight is bit-identical after unlearning; gradient (RUM's RL.py):
    the mask multiplies the gradient only, so weight decay moves the same weights."""
    cell, models = cell_and_models("method=salun", "method.epochs=1", "method.lr=0.05")
    original = models["original"]
    assert cell.cfg.method.mask_update == "hold"
    mask = saliency_mask(copy.deepcopy(original), cell.splits, cell.cfg.method.mask_ratio,
                         cell.cfg.method.batch_size, cell.ctx)
    moved = {}
    for mode in ("hold", "gradient"):
        seed_stage(cell.cfg.seed, "unlearn")
        cfg = OmegaConf.merge(cell.cfg.method, {"mask_update": mode})
        unlearned = METHODS.get("salun")(copy.deepcopy(original), cell.splits, cfg, cell.ctx)
        before, after = dict(original.named_parameters()), dict(unlearned.named_parameters())
        moved[mode] = sum(int((before[n][m == 0] != after[n][m == 0]).sum()) for n, m in mask.items())
    assert moved["hold"] == 0
    assert moved["gradient"] > 0


def test_rum_cumulative_retain_keeps_the_strata_not_reached_yet():
    """cumulative (main_forget.py --sequential): at the mid step D_r still holds the high third; all_forget:
    every step's D_r is D − D_f. At the last step both are D − D_f."""
    from unlearn_bench.data.splits import Splits

    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    labels = torch.arange(10) % 3
    train = ImageData(images, labels)
    forget_index = torch.tensor([1, 3, 5, 7, 8, 9])
    keep = torch.tensor([0, 2, 4, 6])
    splits = Splits(train=train, forget=train.subset(forget_index), retain=train.subset(keep), test=train,
                    forget_test=train.subset(torch.tensor([], dtype=torch.long)), forget_index=forget_index,
                    num_classes=3)
    thirds = memorisation_thirds(torch.tensor([0.1, 0.9, 0.5, 0.8, 0.2, 0.4]))
    order = ["low", "mid", "high"]
    mid = stratum_splits(splits, thirds["mid"], not_reached(thirds, order[:2]))
    high_in_d = set(forget_index[thirds["high"]].tolist())
    assert high_in_d <= set(mid.retain.images.flatten().tolist())
    assert set(mid.retain.images.flatten().tolist()) == set(keep.tolist()) | high_in_d
    assert set(mid.forget.images.flatten().tolist()) == set(forget_index[thirds["mid"]].tolist())
    separate = stratum_splits(splits, thirds["mid"], None)
    assert set(separate.retain.images.flatten().tolist()) == set(keep.tolist())
    assert len(not_reached(thirds, order)) == 0  # the last step: D − D_f either way


def test_scar_target_examples_half_is_a_seeded_half_cut_to_whole_batches():
    test = ImageData(torch.zeros(2501, 1, 2, 2, dtype=torch.uint8), torch.arange(2501))
    cfg = OmegaConf.create({"target_examples": "half", "batch_size": 1024})
    half = target_examples(test, cfg, seed=0)
    assert len(half) == 1024  # ⌈2501 / 2⌉ = 1251, drop_last at 1024
    assert torch.equal(half.labels, target_examples(test, cfg, seed=0).labels)  # seeded
    assert not torch.equal(half.labels, target_examples(test, cfg, seed=1).labels)
    small = target_examples(test, OmegaConf.create({"target_examples": "half", "batch_size": 4096}), seed=0)
    assert len(small) == 1251 and len(set(small.labels.tolist())) == 1251  # below one batch: the whole half
    every = target_examples(test, OmegaConf.create({"target_examples": "all", "batch_size": 1024}), seed=0)
    assert every is test


def test_scar_extra_forward_moves_only_the_batch_norm_statistics(cell_and_models):
    """The extra forward (the reference's loop before its break) is a train-mode forward: with it off, the
    same cell ends with other batch-norm running statistics."""
    cell, models = cell_and_models("method=scar", "method.epochs=1", "method.surrogate_size=128",
                                   "method.batch_size=64", "method.surrogate_steps=2")
    assert cell.cfg.method.extra_forward is True and cell.cfg.method.target_examples == "half"
    runs = {}
    for extra in (True, False):
        cfg = OmegaConf.merge(cell.cfg.method, {"extra_forward": extra})
        runs[extra] = METHODS.get("scar")(copy.deepcopy(models["original"]), cell.splits, cfg, cell.ctx)
    stats = [name for name, _ in runs[True].named_buffers() if name.endswith("running_mean")]
    assert stats
    buffers = {extra: dict(model.named_buffers()) for extra, model in runs.items()}
    assert any(not torch.equal(buffers[True][n], buffers[False][n]) for n in stats)


def test_a_switch_at_its_earlier_value_keeps_the_cell_id(make_cfg):
    """`introduced` lists switches added after records existed with the value those records ran with: at
    that value the key is left out of the id and the record, so earlier records still match their cells."""
    salun = make_cfg("method=salun")
    assert "mask_update" not in cell_config(salun)["method"] and "introduced" not in cell_config(salun)["method"]
    gradient = make_cfg("method=salun", "method.mask_update=gradient")
    assert cell_config(gradient)["method"]["mask_update"] == "gradient"
    assert cell_id(salun) != cell_id(gradient)
    rum = cell_config(make_cfg("method=rum"))["method"]
    assert rum["retain"] == "cumulative" and rum["high"]["mask_update"] == "gradient"
    assert "retain" not in cell_config(make_cfg("method=rum", "method.retain=all_forget"))["method"]
