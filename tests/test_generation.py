"""Diffusion unlearning: the DiMUM loss, DiMRA's data, the evaluation metrics, one tiny end-to-end cell."""

import pytest
import torch

from unlearn_bench.generation.diffusion import Diffusion, to_unit
from unlearn_bench.generation.dimra import auxiliary_set
from unlearn_bench.generation.evaluate import classify, frechet_distance, generation_metrics
from unlearn_bench.methods.dimum import dimum_loss
from unlearn_bench.protocol import prepare
from unlearn_bench.run import run

TINY_GEN = ["task=generation", "model.block_out_channels=[8,16]", "model.norm_num_groups=4",
            "generation.timesteps=20", "generation.train.steps=20", "generation.sample_steps=4",
            "generation.samples_per_class=4", "generation.classifier.epochs=2", "method.steps=5",
            "attack.steps=5", "attack.aux_size=40"]


@pytest.mark.parametrize("aux", ["retain", "sample"])
def test_dimra_data_never_contains_the_forgotten_class(make_cfg, aux):
    cfg = make_cfg(*TINY_GEN, "forget_rate.class_id=4", f"attack.aux={aux}")
    cell = prepare(cfg)
    data = auxiliary_set(cell.splits, cfg.attack, seed=0)
    assert len(data) > 0 and not (data.labels == 4).any()
    assert len(data) == (len(cell.splits.retain) if aux == "retain" else 40)


def test_dimum_loss_is_alt_denoising_plus_lambda_retain(make_cfg):
    cfg = make_cfg(*TINY_GEN)
    cell = prepare(cfg)
    diffusion = Diffusion.create(cfg.generation, 10)
    model = cell.new_model("original")
    x_alt, x_r = to_unit(cell.splits.retain.images[:8]), to_unit(cell.splits.retain.images[8:16])
    y_alt, y_r = torch.zeros(8, dtype=torch.long), cell.splits.retain.labels[8:16]

    def parts(lam):
        torch.manual_seed(0)
        return dimum_loss(model, diffusion, x_alt, y_alt, x_r, y_r, lam).item()

    torch.manual_seed(0)
    alt = diffusion.denoise_loss(model, x_alt, y_alt, label_dropout=0.0).item()
    assert parts(0.0) == pytest.approx(alt, rel=1e-5)
    torch.manual_seed(0)
    diffusion.denoise_loss(model, x_alt, y_alt, label_dropout=0.0)
    retain = diffusion.denoise_loss(model, x_r, y_r).item()
    assert parts(2.5) == pytest.approx(alt + 2.5 * retain, rel=1e-5)


def test_frechet_distance_is_zero_on_identical_sets_and_grows_with_a_shift():
    torch.manual_seed(0)
    a = torch.randn(400, 5)
    assert abs(frechet_distance(a, a)) < 1e-6
    assert frechet_distance(a, a + 3.0) == pytest.approx(9.0 * 5, rel=0.05)


def test_generation_metrics_on_known_inputs(make_cfg):
    """A 'generator' that returns real images: UA is the classifier's error on c_f, FD is small."""
    cfg = make_cfg(*TINY_GEN)
    cell = prepare(cfg)

    class Oracle(torch.nn.Module):  # predicts the label of the image's index: known answers
        def forward_features(self, x):
            return x

        def forward_head(self, x, pre_logits=False):
            feats = x.flatten(1)[:, :6]
            return feats if pre_logits else torch.nn.functional.one_hot(self.labels, 10).float()

    oracle = Oracle()
    test = cell.splits.test
    oracle.labels = torch.where(test.labels == 1, torch.full_like(test.labels, 2), test.labels)[:]
    ctx = cell.ctx.__class__(**{**vars(cell.ctx), "eval_batch_size": 10_000})
    _, real_feats = classify(oracle, test.images, ctx)
    metrics = generation_metrics(oracle, test.images, test.labels, real_feats, test.labels, 1, ctx)
    assert metrics["UA"] == 100.0  # every c_f image is classified as another class
    assert metrics["acc_retained"] == 100.0
    assert abs(metrics["FD"]) < 1e-6


def test_generation_cells_share_references_and_make_a_table(make_cfg, tmp_path, capsys, monkeypatch):
    """Two methods and two seeds with reference_seed=0: one original/retrain pair, their samples scored
    once per seed; the leaderboard's generation table has the original, retrain and both methods."""
    import json
    from pathlib import Path

    records = []
    for method in ("dimum", "esd"):
        for seed in (0, 1):
            records.append(run(make_cfg(*TINY_GEN, f"method={method}", f"seed={seed}",
                                        "generation.reference_seed=0")))
    record = records[0]
    assert record["task"] == "generation"
    for key in ("UA", "acc_retained", "FD", "UA_dimra", "RTE"):
        assert key in record["metrics"]
    assert 0.0 <= record["metrics"]["UA"] <= 100.0 and 0.0 <= record["classifier_test_acc"] <= 100.0
    assert {"original", "retrain", "retrain_dimra", "method", "method_dimra"} <= set(record["grids"])
    assert all(Path(p).is_file() for p in record["grids"].values())
    assert len({json.dumps(r["models"], sort_keys=True) for r in records}) == 1  # one pair for all
    assert records[0]["retrain_metrics"] == records[2]["retrain_metrics"]  # seed 0, cached evaluation
    assert len(list((tmp_path / "cache").glob("retrain-gen-eval-*/result.json"))) == 2  # one per seed

    from unlearn_bench.report import leaderboard

    out = tmp_path / "board"
    assert leaderboard.main(["--task", "generation", "--records", str(tmp_path / "records"), "--out", str(out),
                             "--grids"]) == 0
    table = __import__("pandas").read_csv(out / "leaderboard.csv")
    assert list(table["method"]) == ["original", "retrain", "dimum", "esd"]
    assert (table["n"] == 2).all() and "UA_dimra_mean" in table
    assert (out / "grids_digits.png").is_file() and (out / "leaderboard.png").is_file()
    # the sample grids name the class of each row (the record says how many rows its grids have)
    import matplotlib.pyplot as plt

    from unlearn_bench.report import plots
    from unlearn_bench.report.records import load_records

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    (tmp_path / "grids").mkdir()
    plots.grid_figures(load_records([tmp_path / "records"]), tmp_path / "grids")
    first = figures[0].axes[0]
    assert [t.get_text() for t in first.get_yticklabels()] == [f"class {i}" for i in range(10)]
    from unlearn_bench.report.tables import aggregate

    figure = plots.plot_generation(aggregate(load_records([tmp_path / "records"]))[0], tmp_path / "g.png", "t")
    levels = [line.get_label() for line in figure.axes[0].get_lines() if line.get_label().endswith("UA")
              or "doing nothing" in line.get_label()]
    assert levels == ["original UA (doing nothing)", "retrain UA"]  # the references as levels
    classification = tmp_path / "cls"
    assert leaderboard.main(["--records", str(tmp_path / "records"), "--out", str(classification)]) == 2


def test_classification_method_under_generation_task_is_refused(make_cfg):
    from unlearn_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="method='ft'"):
        run(make_cfg(*TINY_GEN[:1], "method=ft"))


@pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("timesteps", [20, 200, 1000])
def test_noise_schedule_ends_in_pure_noise(schedule, timesteps):
    """Sampling starts from N(0, I): the schedule must leave (almost) nothing of the image at step T,
    whatever the number of steps (1,000-step linear betas over 200 steps would leave a third of it)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"timesteps": timesteps, "beta_schedule": schedule, "label_dropout": 0.1})
    assert Diffusion.create(cfg, num_classes=10).terminal_signal() < 0.01


def test_optimise_with_ema_ends_on_the_moving_average_of_the_weights():
    """`generation.train.ema_decay` (off unless set): the model ends with the EMA of its per-step weights."""
    from unlearn_bench.generation.diffusion import optimise

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    data = [(torch.randn(8, 3), torch.randn(8, 1)) for _ in range(4)]
    snapshots = []

    def step(optimizer):
        optimizer.step()
        snapshots.append(model.weight.detach().clone())

    optimise(model, 4, 0.1, iter(data), lambda x, y: torch.nn.functional.mse_loss(model(x), y), "t", False,
             step_fn=step, ema_decay=0.5)
    expected = snapshots[0]
    for weight in snapshots[1:]:
        expected = 0.5 * expected + 0.5 * weight
    assert torch.allclose(model.weight, expected) and not torch.allclose(model.weight, snapshots[-1])


def test_plateau_is_judged_on_whole_windows():
    from unlearn_bench.generation.diffusion import plateaued

    falling = [1.0] * 10 + [0.5] * 10  # window 10: the second window fell by 50 %
    assert not plateaued(falling, 10, 0.02)
    assert plateaued(falling + [0.495] * 10, 10, 0.02)  # fell by 1 % < 2 %
    assert not plateaued(falling + [0.495] * 9, 10, 0.02)  # not at a window's end
    assert plateaued([0.5] * 10 + [0.6] * 10, 10, 0.02)  # rising counts as converged


@pytest.mark.parametrize(("until", "expected_steps"), [("converged", 10), ("steps", 30)])
def test_dimum_trains_until_its_first_term_converges(make_cfg, until, expected_steps):
    """rel_tol=10 calls any pair of windows a plateau: `converged` stops after two windows of 5 steps."""
    record = run(make_cfg(*TINY_GEN, "method=dimum", "method.steps=30", f"method.until={until}", "method.window=5",
                          "method.rel_tol=10"))
    assert record["method_steps"] == expected_steps


def test_salun_gen_forget_target_is_the_current_models_detached_eps_at_the_next_class(make_cfg):
    """The reference's target (Unlearn-Saliency DDPM saliency_unlearn, method rl): ε_θ(x_t, t, (c_f + 1) mod C)
    of the model being trained, detached; the other switch uses the frozen original at a random class."""
    from unlearn_bench.methods.salun_gen import forget_target

    cfg = make_cfg(*TINY_GEN)
    cell = prepare(cfg)
    diffusion = Diffusion.create(cfg.generation, 10)
    model, frozen = cell.new_model("original"), cell.new_model("retrain")
    x = to_unit(cell.splits.retain.images[:4])
    y = torch.full((4,), 9)
    x_t, t, _ = diffusion.noised(x)
    target = forget_target(model, None, diffusion, x_t, t, y, "current_fixed")
    with torch.no_grad():
        expected = diffusion.eps(model, x_t, t, torch.zeros(4, dtype=torch.long))  # (9 + 1) mod 10
    assert torch.equal(target, expected) and not target.requires_grad
    other = forget_target(model, frozen, diffusion, x_t, t, y, "frozen_random")
    assert not torch.equal(other, target)


def test_the_retrain_floor_is_a_second_retrained_model_sampled_and_attacked_like_the_first(make_cfg, tmp_path):
    """generation.floor=true trains a second retrain model (its own seed), scores it as the retrain model is
    scored (DiMRA included) and records it, so the table has a retrain-floor row; off, the cell id is the one
    it had before the switch existed."""
    from unlearn_bench.report import leaderboard
    from unlearn_bench.tracking import cell_config

    assert "floor" not in cell_config(make_cfg(*TINY_GEN))["generation"]
    record = run(make_cfg(*TINY_GEN, "method=esd", "generation.floor=true"))
    floor, retrain = record["retrain2_metrics"], record["retrain_metrics"]
    assert {"UA", "UA_dimra"} <= set(floor) and floor != retrain
    assert record["models"]["retrain2"]["key"] != record["models"]["retrain"]["key"]
    out = tmp_path / "board"
    assert leaderboard.main(["--task", "generation", "--records", str(tmp_path / "records"), "--out", str(out)]) == 0
    table = __import__("pandas").read_csv(out / "leaderboard.csv")
    assert "retrain floor" in set(table["method"])


def test_a_table_without_a_retrain_floor_says_so(tmp_path):
    """The committed generation records carry no second retrained model: the table says that no difference in
    it can be set against the noise of retraining, and names the switch that adds one."""
    from pathlib import Path

    from unlearn_bench.report import leaderboard

    records = Path(__file__).resolve().parent.parent / "results" / "records"
    out = tmp_path / "board"
    assert leaderboard.main(["--task", "generation", "--records", str(records), "--out", str(out)]) == 0
    text = (out / "leaderboard.md").read_text()
    assert text.count("**No retrain-floor row:**") == 2 and "generation.floor=true" in text
