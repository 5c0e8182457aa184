"""Behaviour tests of the methods other benchmarks include (docs/methods.md): what each one is, on the tiny
digits cell; every one runs from the command-line config, random and class-wise."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from unlearn_bench.data import ImageData
from unlearn_bench.methods import METHODS
from unlearn_bench.methods.bad_teacher import incompetent_teacher
from unlearn_bench.methods.fisher import fisher_diagonal
from unlearn_bench.methods.last_k import last_k
from unlearn_bench.methods.scrub import distill_kl, distill_pass
from unlearn_bench.methods.ssd import importances
from unlearn_bench.rng import seed_stage
from unlearn_bench.run import run

NEW_METHODS = ("neggrad_plus", "scrub", "bad_teacher", "ssd", "cf_k", "eu_k", "fisher", "scar", "msg", "ct")
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
    cfg_plus = {**cfg, "name": "neggrad_plus", "alpha": 1.0, "init_l2": 0.0, "bn": "train", "forget_order": "cached"}
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


def test_neggrad_plus_forget_order_cached_repeats_one_pass_as_the_reference_does(cell_and_models):
    """forget_order: cached (the reference's itertools.cycle over its loader) repeats one shuffled pass of
    D_f within an epoch; reshuffled draws a new order each pass. With D_f in one batch the two coincide
    (eval-mode batch norm: the order inside a batch does not matter); with several batches they differ."""
    from omegaconf import OmegaConf

    cell, models = cell_and_models("method=neggrad_plus", "method.alpha=0.9", "method.epochs=2", "method.lr=0.005")
    assert cell.cfg.method.forget_order == "cached"

    def run(order: str, batch_size: int):
        cfg = OmegaConf.merge(cell.cfg.method, {"forget_order": order, "batch_size": batch_size})
        seed_stage(cell.cfg.seed, "unlearn")
        return METHODS.get("neggrad_plus")(copy.deepcopy(models["original"]), cell.splits, cfg, cell.ctx)

    whole = len(cell.splits.forget)
    same = [torch.allclose(a, b, atol=1e-4) for a, b in zip(run("cached", whole).parameters(),
                                                             run("reshuffled", whole).parameters())]
    assert all(same)
    small = max(1, whole // 4)
    assert not all(torch.equal(a, b) for a, b in zip(run("cached", small).parameters(),
                                                      run("reshuffled", small).parameters()))


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
    assert cfg.full_order == "retain_then_forget"  # the reference's loader: D_r, then D_f in its own batches
    in_order = ImageData.concat(splits.retain, splits.forget)
    imp_all = importances(copy.deepcopy(original), in_order, cfg.batch_size, ctx)
    by_index = importances(copy.deepcopy(original), splits.train, cfg.batch_size, ctx)
    assert not all(torch.allclose(imp_all[k], by_index[k]) for k in imp_all)  # the order matters: a switch
    unlearned = METHODS.get("ssd")(copy.deepcopy(original), splits, cfg, ctx)
    assert ctx.report.diagnostics["ssd_selected"] > 0
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
    """docs/methods.md: the defaults' source, as `# Reference: owner/repo path/file.py ... @ <commit>`; a method
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
    ("method=scar method.surrogate=imagenet", "method.surrogate='imagenet'"),
    ("method=scar method.surrogate=digits", "method.surrogate='digits'"),  # the cell's own dataset
    ("method=scar method.class_threshold=1.5", "method.class_threshold=1.5"),
    ("method=msg method.init_rate=1.0", "method.init_rate=1.0"),
    ("method=msg method.bn=frozen", "method.bn='frozen'"),
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
    eval_cfg = OmegaConf.merge(cfg, {"noise_bn": "eval"})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    noise = error_maximising_noise(model, 0, shape, eval_cfg, torch.Generator().manual_seed(0), torch.device("cpu"))
    labels = torch.zeros(shape[0], dtype=torch.long)
    with torch.no_grad():
        assert nn.functional.cross_entropy(model(noise), labels) > nn.functional.cross_entropy(model(start), labels)
    assert not model.training
    # noise_bn: the reference (train) optimises against batch statistics and moves the running statistics;
    # eval leaves the model untouched and learns another noise
    assert cfg.noise_bn == "train"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # eval: nothing moved
    in_train = error_maximising_noise(model, 0, shape, cfg, torch.Generator().manual_seed(0), torch.device("cpu"))
    moved = [k for k, v in model.state_dict().items() if "running_mean" in k and not torch.equal(before[k], v)]
    assert moved and not torch.allclose(in_train, noise)
    counts = {}
    for copies in ("reference", "all"):
        trained = METHODS.get("unsir")(copy.deepcopy(models["original"]), cell.splits,
                                        OmegaConf.merge(cfg, {"noise_copies": copies, "noise_batches": 2}), cell.ctx)
        counts[copies] = trained
    assert not all(torch.equal(a, b) for a, b in zip(counts["reference"].parameters(), counts["all"].parameters()))


def test_the_leaderboard_fills_tug_of_war_for_records_made_before_it_was_stored():
    import math

    from unlearn_bench.report import records

    record = {"metrics": {"UA": 10.0, "RA": 90.0, "TA": 80.0, "MIA": 30.0},
              "retrain_metrics": {"UA": 20.0, "RA": 95.0, "TA": 70.0, "MIA": 40.0},
              "original_metrics": {"UA": 0.0, "RA": 100.0, "TA": 80.0, "MIA": 5.0, "ToW": 0.5, "ToW_MIA": 0.5}}
    records.fill_tug_of_war(record)
    assert math.isclose(record["metrics"]["ToW"], 0.9 * 0.95 * 0.9)
    assert record["retrain_metrics"]["ToW"] == 1.0
    assert record["original_metrics"]["ToW"] == 0.5  # a stored value is kept
    assert "JS_forget" not in record["metrics"]  # needs the models' outputs: stays missing


def test_msg_reinitialises_the_smallest_gradient_share_and_scales_the_rest():
    from unlearn_bench.methods.msg import annealing_factor, reinitialise_small_gradients

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 3, 3))
    before = [m.weight.detach().clone() for m in (model[0], model[2])]
    for m in (model[0], model[2]):
        m.weight.grad = torch.randn_like(m.weight)
    grads = [m.weight.grad.clone() for m in (model[0], model[2])]
    multipliers = reinitialise_small_gradients(model, 0.3, 0.1)
    for (name, m), w0, g in zip((("0", model[0]), ("2", model[2])), before, grads):
        changed = m.weight != w0
        count = round(0.3 * w0.numel())
        assert int(changed.sum()) == count  # Kaiming draws never equal the old values
        smallest = torch.zeros_like(changed)
        smallest.view(-1)[torch.topk(-g.abs().view(-1), count).indices] = True
        assert torch.equal(changed, smallest)
        assert torch.equal(multipliers[f"{name}.weight"], torch.where(smallest, 1.0, 0.1))
    # LinearAnnealingLR stepped per epoch, 5 epochs: 1/3, 2/3, 1, 2/3, 1/3
    assert [round(annealing_factor(e, 5), 6) for e in range(5)] == [round(x, 6) for x in (1 / 3, 2 / 3, 1, 2 / 3, 1 / 3)]


def test_msg_fine_tunes_kept_weights_with_a_tenth_of_their_gradient(cell_and_models, monkeypatch):
    """On MSG's first fine-tuning batch, the gradient the optimiser sees is the plain gradient of that batch's
    loss times 1 (re-initialised weights) or 0.1 (kept weights); the masks are gone afterwards."""
    from unlearn_bench.methods import msg as module

    cell, models = cell_and_models("method=msg", "method.epochs=1")
    model = copy.deepcopy(models["original"])
    seen = {}
    reinit, batches = module.reinitialise_small_gradients, module.batches

    def record(model, init_rate, kept):
        seen["multipliers"] = reinit(model, init_rate, kept)
        seen["state"] = copy.deepcopy(model.state_dict())
        return seen["multipliers"]

    def record_batches(*args, **kwargs):  # the first batch after the re-initialisation: fine-tuning's
        for x, y in batches(*args, **kwargs):
            if "state" in seen:
                seen.setdefault("batch", (x, y))
            yield x, y

    original_step = torch.optim.SGD.step

    def step(self, *args, **kwargs):
        seen.setdefault("grads", {n: p.grad.clone() for n, p in model.named_parameters()})
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(module, "reinitialise_small_gradients", record)
    monkeypatch.setattr(module, "batches", record_batches)
    monkeypatch.setattr(torch.optim.SGD, "step", step)
    module.msg(model, cell.splits, cell.cfg.method, cell.ctx)
    plain = cell.ctx.new_model()
    plain.load_state_dict(seen["state"])
    plain.train()
    x, y = seen["batch"]
    nn.functional.cross_entropy(plain(x), y).backward()
    plain_grads = dict(plain.named_parameters())
    for name, grad in seen["grads"].items():
        multiplier = seen["multipliers"].get(name, 1.0)
        assert torch.allclose(grad, multiplier * plain_grads[name].grad, atol=1e-6), name
    assert any((m == 0.1).any() and (m == 1.0).any() for m in map(lambda t: t.float(), seen["multipliers"].values()))
    assert all(not p._backward_hooks for p in model.parameters())  # the gradient masks are removed


def test_ct_transposes_every_kernel_then_fine_tunes(cell_and_models):
    from unlearn_bench.methods.ct import transpose_kernels

    cell, models = cell_and_models("method=ct")
    model = copy.deepcopy(models["original"])
    before = {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    transpose_kernels(model)
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            assert torch.equal(m.weight, before[name].swapaxes(2, 3))
    assert any(not torch.equal(m.weight, before[n]) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))


def test_scar_pieces_match_the_reference_formulas():
    from unlearn_bench.methods.scar import distill, mahalanobis, shrink

    torch.manual_seed(0)
    cov = torch.cov(torch.randn(5, 30))
    off = cov.clone().fill_diagonal_(0)
    expected = cov + 3 * torch.eye(5) * cov.diagonal().mean() + 3 * (1 - torch.eye(5)) * off.sum() / (off != 0).sum()
    assert torch.allclose(shrink(cov, 3.0, 3.0), expected)
    features, means = torch.rand(7, 5), torch.rand(3, 5)
    inverses = torch.stack([torch.linalg.pinv(shrink(torch.cov(torch.rand(5, 20)), 3.0, 3.0)) for _ in range(3)])
    # the reference: diagonal(matmul(matmul(diff.permute(1,0,2), S_inv), diff.permute(1,2,0))).T
    diff = nn.functional.normalize(features.pow(0.5), dim=-1)[:, None, :] - nn.functional.normalize(means, dim=-1)
    reference = torch.diagonal(torch.matmul(torch.matmul(diff.permute(1, 0, 2), inverses), diff.permute(1, 2, 0)),
                               dim1=1, dim2=2).T
    assert torch.allclose(mahalanobis(features, means, inverses, 0.5), reference, atol=1e-5)
    student, teacher = torch.randn(4, 3), torch.randn(4, 3)
    assert distill(teacher, teacher).item() == pytest.approx(0.0, abs=1e-6)
    kl = (teacher.softmax(1) * (teacher.log_softmax(1) - student.log_softmax(1))).sum(1).mean()
    assert distill(student, teacher).item() == pytest.approx(kl.item() * math.exp(1e-4), rel=1e-6)  # the offsets


def test_scar_pulls_forget_features_toward_another_class(cell_and_models):
    """With the distillation off, SCAR's steps lower the forget examples' Mahalanobis distance to their
    closest other class (the quantity it minimises), and forgetting drops their accuracy."""
    from unlearn_bench.methods.scar import class_distributions, mahalanobis
    from unlearn_bench.metrics.core import accuracy, features_of, logits_on

    cell, models = cell_and_models("method=scar", "method.lambda_2=0", "method.epochs=2", "method.lr=0.005",
                                   "method.surrogate_size=256", "method.batch_size=64")
    cfg, splits, ctx = cell.cfg.method, cell.splits, cell.ctx
    original = models["original"]
    classes = list(range(ctx.num_classes))
    means, inverses = class_distributions(features_of(original, splits.retain, ctx), splits.retain.labels, classes, cfg)

    def distance_to_other(model):
        dists = mahalanobis(features_of(model, splits.forget, ctx), means, inverses, cfg.delta)
        dists[torch.arange(len(dists)), splits.forget.labels] = float("inf")
        return dists.min(1).values.mean().item()

    model = METHODS.get("scar")(copy.deepcopy(original), splits, cfg, ctx)
    assert distance_to_other(model) < distance_to_other(original)
    assert accuracy(logits_on(model, splits.forget, ctx), splits.forget.labels) < \
        accuracy(logits_on(original, splits.forget, ctx), splits.forget.labels)


def test_a_second_dataset_config_composes_its_defaults_like_the_group():
    from unlearn_bench.data import dataset_config

    fashion = dataset_config("fashion_mnist")
    assert fashion.name == "fashion_mnist" and fashion.file == "fashion_mnist.npz"
    assert fashion.source == "auto" and fashion.channels == 1  # inherited from mnist.yaml
    from unlearn_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="dataset='imagenet'"):
        dataset_config("imagenet")


def test_scar_surrogate_takes_the_cells_shape(cell_and_models):
    from omegaconf import OmegaConf

    from unlearn_bench.methods.scar import surrogate_images

    cell, _ = cell_and_models("method=scar")
    cfg = OmegaConf.merge(cell.cfg.method, {"surrogate": "gaussian_noise", "surrogate_size": 32})
    noise = surrogate_images(cfg, cell.ctx, (3, 16, 16))
    assert noise.shape == (32, 3, 16, 16) and noise.dtype == torch.uint8
    assert torch.equal(noise, surrogate_images(cfg, cell.ctx, (3, 16, 16)))  # seeded
    cell.ctx.load_dataset = lambda name: type("D", (), {"train": type("T", (), {
        "images": torch.randint(0, 256, (50, 1, 28, 28), dtype=torch.uint8)})()})()
    grey = surrogate_images(OmegaConf.merge(cfg, {"surrogate": "mnist"}), cell.ctx, (3, 32, 32))
    assert grey.shape == (32, 3, 32, 32) and torch.equal(grey[:, 0], grey[:, 1])  # grey repeated to RGB


def test_scar_weights_and_teacher_follow_the_reference_modes():
    from unlearn_bench.methods.scar import class_wise_teacher, weighted_by_class

    dists = torch.tensor([1.0, 2.0, 3.0, 4.0])
    labels = torch.tensor([0, 1, 2, 2])
    accuracy = torch.tensor([0.9, 0.5, 1.0])  # class 1 already below the 0.8 threshold
    assert torch.equal(weighted_by_class(dists, labels, accuracy, 0.8), torch.tensor([0.9, 0.0, 3.0, 4.0]))

    class Fixed(nn.Module):
        def forward(self, x):
            return x
    logits = torch.tensor([[5.0, 1.0, 0.0], [0.0, 3.0, 1.0], [2.0, 0.0, 4.0]])
    teacher, kept = class_wise_teacher(Fixed(), logits, [1])
    assert torch.equal(kept, torch.tensor([True, False, True]))  # the sample the original calls class 1 goes
    assert torch.equal(teacher, torch.tensor([[5.0, 0.0, 0.0], [2.0, 0.0, 4.0]]))  # column 1 = the minimum


def test_a_missing_surrogate_file_is_one_line_before_training(make_cfg, tmp_path):
    from unlearn_bench.errors import UserError

    with pytest.raises(UserError, match="fashion_mnist.npz not found for dataset=fashion_mnist"):
        run(make_cfg("method=scar", "method.surrogate=fashion_mnist", f"paths.data_root={tmp_path / 'empty'}"))
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.pt"))
