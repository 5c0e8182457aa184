import pytest
import torch
from omegaconf import OmegaConf

from unlearn_bench.data import load_dataset, make_splits, select_forget
from unlearn_bench.errors import ConfigError


def forget_cfg(**kw):
    base = {"mode": "random", "rate": 0.1, "count": None, "class_id": None}
    return OmegaConf.create({**base, **kw})


def test_forget_set_is_deterministic_disjoint_and_sized(make_cfg):
    cfg = make_cfg()
    dataset = load_dataset(cfg.dataset, cfg.paths.data_root)
    a = make_splits(dataset, cfg.forget_rate, seed=3)
    b = make_splits(dataset, cfg.forget_rate, seed=3)
    c = make_splits(dataset, cfg.forget_rate, seed=4)
    assert torch.equal(a.forget_index, b.forget_index)
    assert not torch.equal(a.forget_index, c.forget_index)
    assert len(a.forget) == round(0.1 * len(dataset.train))
    assert len(a.forget) + len(a.retain) == len(dataset.train)
    assert torch.equal(a.forget.images, dataset.train.images[a.forget_index])


def test_class_mode_removes_class_from_test_set(make_cfg):
    cfg = make_cfg("forget_rate=class", "forget_rate.class_id=3")
    dataset = load_dataset(cfg.dataset, cfg.paths.data_root)
    splits = make_splits(dataset, cfg.forget_rate, seed=0)
    assert (splits.forget.labels == 3).all() and not (splits.retain.labels == 3).any()
    assert not (splits.test.labels == 3).any() and (splits.forget_test.labels == 3).all()
    assert len(splits.test) + len(splits.forget_test) == len(dataset.test)


def test_count_overrides_rate():
    labels = torch.arange(100) % 10
    assert len(select_forget(labels, forget_cfg(count=7), seed=0, num_classes=10)) == 7


@pytest.mark.parametrize("kw, key", [({"rate": 0.0}, "forget_rate.rate"), ({"rate": 1.0}, "forget_rate.rate"),
                                     ({"rate": -0.2}, "forget_rate.rate"), ({"rate": 1.5}, "forget_rate.rate"),
                                     ({"count": 100}, "forget_rate.count"), ({"count": 0}, "forget_rate.count"),
                                     ({"mode": "class", "class_id": 10}, "forget_rate.class_id"),
                                     ({"mode": "classes"}, "forget_rate.mode")])
def test_bad_forget_config_names_the_key(kw, key):
    with pytest.raises(ConfigError, match=key):
        select_forget(torch.arange(100) % 10, forget_cfg(**kw), seed=0, num_classes=10)


def test_corrupted_forget_set_flips_only_d_f_and_is_reproducible(make_cfg):
    from pathlib import Path

    cfg = make_cfg("forget_rate=corrupted", "forget_rate.share=0.1")
    dataset = load_dataset(cfg.dataset, Path(cfg.paths.data_root))
    splits = make_splits(dataset, cfg.forget_rate, cfg.seed)
    index = splits.forget_index
    assert len(index) == round(0.1 * len(dataset.train))
    assert (splits.forget.labels.cpu() != splits.forget_true_labels).all()  # every flipped label is wrong
    assert torch.equal(splits.forget_true_labels, dataset.train.labels[index].cpu())
    keep = torch.ones(len(dataset.train), dtype=torch.bool)
    keep[index] = False
    assert torch.equal(splits.retain.labels, dataset.train.labels[keep])  # D_r is clean
    assert torch.equal(splits.train.labels[keep], dataset.train.labels[keep])  # only D_f changed in D
    assert torch.equal(splits.test.labels, dataset.test.labels)  # T is the clean test set
    again = make_splits(dataset, cfg.forget_rate, cfg.seed)
    assert torch.equal(again.forget_index, index) and torch.equal(again.forget.labels, splits.forget.labels)
    other = make_splits(dataset, cfg.forget_rate, cfg.seed + 1)
    assert not torch.equal(other.forget_index, index)


def test_a_corrupted_cell_records_the_accuracy_on_the_true_labels(make_cfg):
    from unlearn_bench.run import run

    record = run(make_cfg("forget_rate=corrupted", "method=ft"))
    for row in ("metrics", "retrain_metrics", "original_metrics"):
        assert 0.0 <= record[row]["forget_true_acc"] <= 100.0
    # The original learnt the flipped labels; the retrain model never saw them.
    assert record["original_metrics"]["UA"] < record["retrain_metrics"]["UA"]


def test_memorization_strata_are_disjoint_and_ordered_by_score():
    from unlearn_bench.data.splits import memorization_stratum

    scores = torch.randperm(100, generator=torch.Generator().manual_seed(0)).double()
    strata = {s: memorization_stratum(scores, forget_cfg(mode="memorization", rate=None, count=20, stratum=s))
              for s in ("low", "mid", "high")}
    assert all(len(index) == 20 for index in strata.values())
    assert not set(strata["low"].tolist()) & set(strata["mid"].tolist())
    assert not set(strata["mid"].tolist()) & set(strata["high"].tolist())
    assert scores[strata["low"]].max() < scores[strata["mid"]].min() < scores[strata["mid"]].max() < scores[strata["high"]].min()
    assert set(scores[strata["high"]].tolist()) == set(range(80, 100))


def test_a_subpopulation_is_one_cluster_of_one_class():
    from unlearn_bench.data.splits import subpopulation_cluster

    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    sizes = [30, 20, 10]
    features = torch.cat([c + 0.1 * torch.randn(n, 2, generator=gen) for c, n in zip(centres, sizes)])
    class_index = torch.arange(1000, 1060)  # the class's positions in D
    cfg = OmegaConf.create({"clusters": 3, "cluster": 1, "class_id": 5})
    index = subpopulation_cluster(features, class_index, cfg, seed=0)
    assert torch.equal(index, torch.arange(1030, 1050))  # cluster 1 by size = the 20 around (10, 0)


def test_model_dependent_forget_sets_are_reproducible_and_the_original_is_the_same_model(make_cfg, tmp_path):
    import json

    from unlearn_bench.protocol import prepare

    for mode in (["forget_rate=memorization", "forget_rate.count=50"], ["forget_rate=subpopulation", "forget_rate.class_id=2"]):
        first, second = prepare(make_cfg(*mode), tmp_path / "cache"), prepare(make_cfg(*mode), tmp_path / "cache")
        if "forget_rate=memorization" in mode:
            first_stratum = first
        assert torch.equal(first.splits.forget_index, second.splits.forget_index) and len(first.splits.forget_index)
        if "forget_rate.class_id=2" in mode:
            assert (first.splits.forget.labels == 2).all()
    from unlearn_bench.cache import ModelCache
    from unlearn_bench.protocol import reference_models

    plain = prepare(make_cfg("forget_rate=random_10"), tmp_path / "cache")
    reference_models(plain, ModelCache(tmp_path / "cache"), stages=("original",))
    (shared,) = [p for p in (tmp_path / "cache").glob("original-*.json")]  # one original serves every cell
    meta = json.loads(shared.read_text())
    assert len(meta["example_confidence"]) == len(plain.splits.train)

    # An entry stored before originals recorded their confidence cannot serve a stratum: the stratum trains
    # its own entry (keyed with `records`), with the same weights, and later strata keep to that entry.
    del meta["example_confidence"]
    shared.write_text(json.dumps(meta))
    stratum = ["forget_rate=memorization", "forget_rate.count=50"]
    again = prepare(make_cfg(*stratum), tmp_path / "cache")
    assert torch.equal(again.splits.forget_index, first_stratum.splits.forget_index)
    metas = [json.loads(p.read_text()) for p in (tmp_path / "cache").glob("original-*.json")]
    assert len(metas) == 2 and metas[0]["sha256"] == metas[1]["sha256"]  # recording changes no weight
    assert sum("example_confidence" in m for m in metas) == 1
    prepare(make_cfg(*stratum), tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("original-*.json"))) == 2


def test_feldman_scores_put_each_example_in_half_the_models_and_see_memorisation(make_cfg, tmp_path):
    """Complementary halves: every example is in exactly halves/2 models; models fit their own half better
    than the other, so the mean estimate is positive; the same seed gives the same scores (cached models)."""
    from unlearn_bench import protocol
    from unlearn_bench.cache import ModelCache

    cfg = make_cfg("forget_rate=memorization", "forget_rate.score=feldman", "forget_rate.halves=4",
                   "forget_rate.count=50")
    cell = protocol.prepare(cfg, tmp_path / "cache")  # selects D_f with the Feldman scores
    cache = ModelCache(tmp_path / "cache")
    scores = protocol.feldman_scores(cell, cache, 4)
    assert scores.shape == (len(cell.splits.train),) and scores.min() >= -1 and scores.max() <= 1
    assert scores.mean() > 0
    assert torch.equal(scores, protocol.feldman_scores(cell, cache, 4))
    member = protocol.complementary_halves(101, 6, seed=3)
    assert (member.sum(0) == 3).all() and (member[0] ^ member[1]).all()  # each example in half the models
    assert torch.equal(member, protocol.complementary_halves(101, 6, seed=3))
    assert len(list((tmp_path / "cache").glob("half-*.pt"))) == 4
    high = torch.argsort(scores, stable=True)[-50:].sort().values
    assert torch.equal(cell.splits.forget_index.cpu(), high)  # the default stratum: the 50 highest


@pytest.mark.parametrize("overrides, key", [
    (["forget_rate=corrupted", "forget_rate.share=1.5"], "forget_rate.share=1.5"),
    (["forget_rate=corrupted", "forget_rate.rate=0.1"], "forget_rate.rate=0.1"),
    (["forget_rate=random_10", "+forget_rate.share=0.1"], "forget_rate.share=0.1"),
    (["forget_rate=corrupted", "forget_rate.share=0.0001"], "forget_rate.share=0.0001"),
    (["method=rum", "method.order=[low,low]"], "method.order"),
    (["method=rum", "method.mid.name=rum"], "method.mid.name='rum'"),
    (["method=rum", "method.high.epochs=0"], "method.epochs=0"),
    (["forget_rate=memorization", "forget_rate.stratum=top"], "forget_rate.stratum='top'"),
    (["forget_rate=memorization", "forget_rate.count=5000"], "forget_rate.count=5000"),
    (["forget_rate=subpopulation", "forget_rate.class_id=10"], "forget_rate.class_id=10"),
    (["forget_rate=subpopulation", "forget_rate.cluster=4"], "forget_rate.cluster=4"),
    (["forget_rate=subpopulation", "forget_rate.clusters=500"], "forget_rate.clusters=500"),
    (["forget_rate=random_10", "+forget_rate.stratum=high"], "forget_rate.stratum='high'"),
    (["forget_rate=memorization", "forget_rate.score=feldman"], "forget_rate.halves=None"),
    (["forget_rate=memorization", "forget_rate.score=feldman", "forget_rate.halves=3"], "forget_rate.halves=3"),
    (["forget_rate=memorization", "forget_rate.halves=4"], "forget_rate.halves=4"),  # the proxy reads none
])
def test_bad_forget_set_and_rum_settings_are_one_line_before_training(make_cfg, tmp_path, overrides, key):
    from unlearn_bench.run import run

    with pytest.raises(ConfigError) as err:
        run(make_cfg(*overrides))
    assert key in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.pt"))


def test_rum_splits_d_f_into_ordered_thirds_and_applies_each_strata_method_in_turn(cell_and_models):
    import copy

    from omegaconf import OmegaConf

    from unlearn_bench.methods import METHODS
    from unlearn_bench.methods.rum import memorisation_thirds, stratum_splits
    from unlearn_bench.rng import seed_stage

    scores = torch.tensor([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0])
    thirds = memorisation_thirds(scores)
    assert sorted(torch.cat(list(thirds.values())).tolist()) == list(range(7))
    assert scores[thirds["low"]].max() < scores[thirds["mid"]].min() <= scores[thirds["mid"]].max() < scores[thirds["high"]].min()

    cell, models = cell_and_models("method=rum")
    ctx, splits = cell.ctx, cell.splits
    ctx.references.example_confidence = torch.rand(len(splits.train), generator=torch.Generator().manual_seed(1)).tolist()
    nothing = OmegaConf.merge(cell.cfg.method, {"mid": None, "high": None})
    unchanged = METHODS.get("rum")(copy.deepcopy(models["original"]), splits, nothing, ctx)
    assert all(torch.equal(a, b) for a, b in zip(unchanged.state_dict().values(), models["original"].state_dict().values()))

    ga_cfg = OmegaConf.create({**OmegaConf.to_container(cell.cfg.method.mid, resolve=True),
                               "name": "ga", "lr": 0.05, "epochs": 1, "bn": "train"})
    only_high = OmegaConf.create({**OmegaConf.to_container(cell.cfg.method, resolve=True), "mid": None,
                                  "high": OmegaConf.to_container(ga_cfg)})
    via_rum = METHODS.get("rum")(copy.deepcopy(models["original"]), splits, only_high, ctx)
    scores = 1.0 - torch.tensor(ctx.references.example_confidence, dtype=torch.float64)[splits.forget_index.cpu()]
    seed_stage(ctx.seed, "rum-high")
    direct = METHODS.get("ga")(copy.deepcopy(models["original"]), stratum_splits(splits, memorisation_thirds(scores)["high"]),
                               ga_cfg, ctx)
    assert all(torch.equal(a, b) for a, b in zip(via_rum.state_dict().values(), direct.state_dict().values()))
    assert ctx.report.diagnostics["rum_steps"] == {"high": "ga"}

    # retain: cumulative (the reference) trains the mid step with the high third still in D_r, all_forget not
    assert (cell.cfg.method.retain, cell.cfg.method.high.schedule, cell.cfg.method.high.mask_update) == \
        ("cumulative", "mixed", "gradient")
    only_mid = OmegaConf.merge(cell.cfg.method, {"high": None, "mid": {"epochs": 1}})
    runs = [METHODS.get("rum")(copy.deepcopy(models["original"]), splits, OmegaConf.merge(only_mid, {"retain": mode}), ctx)
            for mode in ("cumulative", "all_forget")]
    assert not all(torch.equal(a, b) for a, b in zip(runs[0].state_dict().values(), runs[1].state_dict().values()))
