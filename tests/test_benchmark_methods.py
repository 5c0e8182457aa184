"""Behaviour tests of the methods other benchmarks include (SPEC §11): what each one is, on the tiny
digits cell; every one runs from the command-line config, random and class-wise."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from unlearn_bench.methods import METHODS
from unlearn_bench.methods.bad_teacher import incompetent_teacher
from unlearn_bench.methods.fisher import fisher_diagonal
from unlearn_bench.methods.last_k import last_k
from unlearn_bench.methods.scrub import distill_kl, distill_pass
from unlearn_bench.methods.ssd import importances
from unlearn_bench.run import run
from unlearn_bench.train import seed_stage

NEW_METHODS = ("neggrad_plus", "scrub", "bad_teacher", "ssd", "cf_k", "eu_k", "fisher")
CLASS_WISE_ONLY = ("unsir",)
CONF = Path(__file__).resolve().parent.parent / "conf" / "method"


def mean_kl(student: nn.Module, teacher: nn.Module, images: torch.Tensor, ctx, temperature: float = 1.0) -> float:
    student.eval()
    teacher.eval()
    with torch.no_grad():
        x = ctx.inputs(images, augment=False)
        return distill_kl(student(x), teacher(x), temperature).item()


def test_neggrad_plus_with_alpha_one_is_fine_tuning(cell_and_models):
    cell, models = cell_and_models("method=ft", "method.weight_decay=0.0", "method.epochs=2")
    seed_stage(cell.cfg.seed, "unlearn")
    ft = METHODS.get("ft")(copy.deepcopy(models["original"]), cell.splits, cell.cfg.method, cell.ctx)
    cfg = copy.deepcopy(cell.cfg.method)
    cfg_plus = {**cfg, "name": "neggrad_plus", "alpha": 1.0, "init_l2": 0.0, "bn": "train"}
    from omegaconf import OmegaConf

    seed_stage(cell.cfg.seed, "unlearn")
    plus = METHODS.get("neggrad_plus")(copy.deepcopy(models["original"]), cell.splits, OmegaConf.create(cfg_plus),
                                       cell.ctx)
    for (name, a), b in zip(ft.state_dict().items(), plus.state_dict().values()):
        assert torch.equal(a, b), name


def test_neggrad_plus_below_one_raises_the_forget_loss(cell_and_models):
    from .test_methods import forget_loss

    cell, models = cell_and_models("method=neggrad_plus", "method.alpha=0.5", "method.epochs=2", "method.lr=0.05")
    seed_stage(cell.cfg.seed, "unlearn")
    unlearned = METHODS.get("neggrad_plus")(copy.deepcopy(models["original"]), cell.splits, cell.cfg.method, cell.ctx)
    assert forget_loss(unlearned, cell) > forget_loss(models["original"], cell)


def test_scrub_max_steps_raise_the_forget_kl_and_min_steps_lower_the_retain_kl(cell_and_models):
    cell, models = cell_and_models("method=scrub", "method.lr=1e-3")
    cfg, ctx, splits = cell.cfg.method, cell.ctx, cell.splits
    teacher, student = copy.deepcopy(models["original"]), copy.deepcopy(models["original"])
    optimizer = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    assert abs(mean_kl(student, teacher, splits.forget.images, ctx)) < 1e-8  # the student starts as the teacher
    distill_pass(student, teacher, splits.forget, cfg.forget_batch_size, cfg, ctx, optimizer, "maximize")
    raised = mean_kl(student, teacher, splits.forget.images, ctx)
    assert raised > 1e-4
    # The min pass's distillation term (γ = 0 isolates it from the CE term; no weight decay; batch norm in
    # eval mode so that training and scoring see the same network) brings the student back on D_r.
    retain_before = mean_kl(student, teacher, splits.retain.images, ctx)
    from omegaconf import OmegaConf

    min_cfg = OmegaConf.merge(cfg, {"gamma": 0.0, "bn": "eval"})
    optimizer = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    distill_pass(student, teacher, splits.retain, cfg.batch_size, min_cfg, ctx, optimizer, "minimize")
    assert mean_kl(student, teacher, splits.retain.images, ctx) < retain_before


def test_bad_teacher_pulls_the_forget_outputs_toward_the_random_network(cell_and_models):
    cell, models = cell_and_models("method=bad_teacher", "method.epochs=3", "method.lr=1e-3")
    ctx, forget = cell.ctx, cell.splits.forget.images
    incompetent = incompetent_teacher(ctx)
    before = mean_kl(models["original"], incompetent, forget, ctx)
    unlearned = METHODS.get("bad_teacher")(copy.deepcopy(models["original"]), cell.splits, cell.cfg.method, ctx)
    assert mean_kl(unlearned, incompetent, forget, ctx) < before
    # ... while the retain outputs stay with the original (its KL there stays below the forget set's).
    assert mean_kl(unlearned, models["original"], cell.splits.retain.images, ctx) < mean_kl(
        unlearned, models["original"], forget, ctx)


def test_ssd_trains_nothing_and_dampens_only_the_selected_weights(cell_and_models):
    cell, models = cell_and_models("method=ssd", "method.alpha=2.0")
    cfg, ctx, splits = cell.cfg.method, cell.ctx, cell.splits
    original = models["original"]
    imp_forget = importances(copy.deepcopy(original), splits.forget, cfg.batch_size, ctx)
    imp_all = importances(copy.deepcopy(original), splits.train, cfg.batch_size, ctx)
    unlearned = METHODS.get("ssd")(copy.deepcopy(original), splits, cfg, ctx)
    assert ctx.extras["ssd_selected"] > 0
    before, after = dict(original.named_parameters()), dict(unlearned.named_parameters())
    for name in before:
        selected = imp_forget[name] > cfg.alpha * imp_all[name]
        assert torch.equal(before[name][~selected], after[name][~selected]), name
        assert (after[name][selected].abs() <= before[name][selected].abs()).all(), name
    for (name, a), b in zip(original.named_buffers(), unlearned.buffers()):
        assert torch.equal(a, b), name  # batch-norm statistics untouched: nothing was trained


@pytest.mark.parametrize("method", ["cf_k", "eu_k"])
def test_last_k_methods_leave_every_other_layer_bit_identical(cell_and_models, method):
    cell, models = cell_and_models(f"method={method}", "method.epochs=1")
    original = models["original"]
    unlearned = METHODS.get(method)(copy.deepcopy(original), cell.splits, cell.cfg.method, cell.ctx)
    trainable = {id(p) for module in last_k(unlearned, cell.cfg.method.k) for p in module.parameters()}
    changed = 0
    for (name, a), b in zip(original.named_parameters(), unlearned.parameters()):
        if id(b) in trainable:
            changed += int(not torch.equal(a, b))
        else:
            assert torch.equal(a, b), name
    assert changed > 0
    assert all(p.requires_grad for p in unlearned.parameters())  # handed back trainable


def test_eu_k_reinitialises_its_last_k(cell_and_models):
    cell, models = cell_and_models("method=eu_k", "method.epochs=1", "method.lr=1e-12", "method.init_l2=0.0")
    unlearned = METHODS.get("eu_k")(copy.deepcopy(models["original"]), cell.splits, cell.cfg.method, cell.ctx)
    block, classifier = last_k(unlearned, 1)
    batch_norm = block[1]
    assert torch.allclose(batch_norm.weight, torch.ones_like(batch_norm.weight), atol=1e-6)
    assert torch.allclose(classifier.bias, torch.zeros_like(classifier.bias), atol=1e-6)
    original_fc = models["original"].get_classifier().weight
    assert not torch.allclose(classifier.weight, original_fc)


def test_fisher_diagonal_equals_the_one_example_at_a_time_reference(cell_and_models):
    cell, models = cell_and_models("method=fisher")
    model, ctx = copy.deepcopy(models["original"]).eval(), cell.ctx
    data = cell.splits.retain.subset(torch.arange(6))
    fast = fisher_diagonal(model, data, 4, ctx)
    slow = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for i in range(len(data)):  # the reference's loop: batch 1, every class, p(y|x)·g²
        x = ctx.inputs(data.images[i:i + 1], augment=False)
        output = model(x)
        prob = nn.functional.softmax(output, -1).detach()
        for y in range(output.shape[1]):
            model.zero_grad()
            nn.functional.cross_entropy(output, torch.tensor([y])).backward(retain_graph=True)
            for name, p in model.named_parameters():
                slow[name] += prob[0, y] * p.grad.pow(2)
    for name in slow:
        torch.testing.assert_close(fast[name], slow[name] / len(data), rtol=1e-4, atol=1e-10)


def test_fisher_adds_more_noise_where_d_r_constrains_less(cell_and_models):
    cell, models = cell_and_models("method=fisher", "method.alpha=1e-4")
    seed_stage(0, "unlearn")
    a = METHODS.get("fisher")(copy.deepcopy(models["original"]), cell.splits, cell.cfg.method, cell.ctx)
    seed_stage(0, "unlearn")
    b = METHODS.get("fisher")(copy.deepcopy(models["original"]), cell.splits, cell.cfg.method, cell.ctx)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))  # seeded
    assert any(not torch.equal(x, y) for x, y in zip(a.parameters(), models["original"].parameters()))


@pytest.mark.parametrize("forget", ["random_10", "class"])
def test_each_new_method_runs_from_the_config(make_cfg, forget, capsys):
    methods = NEW_METHODS + (CLASS_WISE_ONLY if forget == "class" else ())
    for method in methods:  # one cache: the reference models train once, every method reuses them
        record = run(make_cfg(f"method={method}", f"forget_rate={forget}"))
        assert record["method"] == method and 0.0 <= record["metrics"]["RA"] <= 100.0
        for column in ("ToW", "ToW_MIA", "JS_forget", "activation_distance"):
            assert column in record["metrics"] and column in record["original_metrics"]
        assert record["retrain_metrics"]["ToW"] == 1.0 and record["retrain_metrics"]["JS_forget"] == 0.0
    assert capsys.readouterr().out.count("original: cache hit") == len(methods) - 1


@pytest.mark.parametrize("method", sorted(p.stem for p in CONF.glob("*.yaml")))
def test_every_method_yaml_cites_its_reference_file_and_commit(method):
    """SPEC §13: the defaults' source, as `# Reference: owner/repo path/file.py ... @ <commit>`; a method
    without public code names its paper instead and says so."""
    text = (CONF / f"{method}.yaml").read_text()
    line = re.search(r"^# Reference: (.*)$", text, re.MULTILINE)
    assert line, method
    cited = re.match(r"\S+/\S+ \S+\.(py|ipynb)\b", line.group(1)) and re.search(r"@ [0-9a-f]{40}", text)
    assert cited or ("arXiv:" in line.group(1) and "no public" in text), method


@pytest.mark.parametrize("override, key", [
    ("method=neggrad_plus method.alpha=1.5", "method.alpha=1.5"),
    ("method=scrub method.optimizer=rmsprop", "method.optimizer='rmsprop'"),
    ("method=scrub method.sgd_momentum=0.9", "method.sgd_momentum=0.9"),
    ("method=bad_teacher method.retain_share=2", "method.retain_share=2"),
    ("method=ssd method.alpha=0", "method.alpha=0"),
    ("method=cf_k method.k=9", "method.k=9"),
    ("method=eu_k method.bn=frozen", "method.bn='frozen'"),
    ("method=fisher method.alpha=-1", "method.alpha=-1"),
    ("method=unsir", "method='unsir'"),  # random forgetting: UNSIR has no form for it
    ("method=unsir forget_rate=class method.noise_copies=some", "method.noise_copies='some'"),
])
def test_bad_switches_of_the_new_methods_fail_before_training(make_cfg, tmp_path, override, key):
    from unlearn_bench.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        run(make_cfg(*override.split()))
    assert key in str(err.value)
    assert not list((tmp_path / "cache").glob("*.pt")) if (tmp_path / "cache").exists() else True


def test_the_metric_columns_on_known_answers():
    import math

    from unlearn_bench.metrics.compare import compare_to_retrain

    metrics = {"UA": 10.0, "RA": 90.0, "TA": 80.0, "MIA": 30.0}
    retrain = {"UA": 20.0, "RA": 95.0, "TA": 70.0, "MIA": 40.0}
    one_hot = torch.tensor([[100.0, 0.0], [0.0, 100.0]])
    same = compare_to_retrain(retrain, retrain, one_hot, one_hot)
    assert same == {"ToW": 1.0, "ToW_MIA": 1.0, "JS_forget": 0.0, "activation_distance": 0.0}
    apart = compare_to_retrain(metrics, retrain, one_hot, one_hot.flip(1))
    assert math.isclose(apart["ToW"], 0.9 * 0.95 * 0.9)
    assert math.isclose(apart["ToW_MIA"], 0.9 * 0.95 * 0.9)
    assert math.isclose(apart["JS_forget"], math.log(2), rel_tol=1e-9)  # disjoint distributions: ln 2
    assert math.isclose(apart["activation_distance"], math.sqrt(2), rel_tol=1e-9)


def test_unsir_noise_maximises_the_forgotten_class_loss_and_is_copied_as_the_reference(cell_and_models):
    from omegaconf import OmegaConf

    from unlearn_bench.methods.unsir import error_maximising_noise

    cell, models = cell_and_models("method=unsir", "forget_rate=class")
    cfg, model = cell.cfg.method, copy.deepcopy(models["original"]).eval()
    shape = (cfg.noise_batch_size, 1, 8, 8)
    start = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    noise = error_maximising_noise(model, 0, shape, cfg, torch.Generator().manual_seed(0), torch.device("cpu"))
    labels = torch.zeros(shape[0], dtype=torch.long)
    with torch.no_grad():
        assert nn.functional.cross_entropy(model(noise), labels) > nn.functional.cross_entropy(model(start), labels)
    counts = {}
    for copies in ("reference", "all"):
        trained = METHODS.get("unsir")(copy.deepcopy(models["original"]), cell.splits,
                                        OmegaConf.merge(cfg, {"noise_copies": copies, "noise_batches": 2}), cell.ctx)
        counts[copies] = trained
    assert not all(torch.equal(a, b) for a, b in zip(counts["reference"].parameters(), counts["all"].parameters()))


def test_the_leaderboard_fills_tug_of_war_for_records_made_before_it_was_stored():
    import math
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import leaderboard

    record = {"metrics": {"UA": 10.0, "RA": 90.0, "TA": 80.0, "MIA": 30.0},
              "retrain_metrics": {"UA": 20.0, "RA": 95.0, "TA": 70.0, "MIA": 40.0},
              "original_metrics": {"UA": 0.0, "RA": 100.0, "TA": 80.0, "MIA": 5.0, "ToW": 0.5, "ToW_MIA": 0.5}}
    leaderboard.fill_tug_of_war(record)
    assert math.isclose(record["metrics"]["ToW"], 0.9 * 0.95 * 0.9)
    assert record["retrain_metrics"]["ToW"] == 1.0
    assert record["original_metrics"]["ToW"] == 0.5  # a stored value is kept
    assert "JS_forget" not in record["metrics"]  # needs the models' outputs: stays missing
