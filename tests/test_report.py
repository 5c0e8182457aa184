"""The report layer's statistics on cases with a known answer, and the augmentation study's verdicts on
constructed records."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from unlearn_bench.report import augmentation, claim
from unlearn_bench.report.stats import detectable_difference, family_alpha, holm, kendall_interval, tost
from unlearn_bench.verdict import paired_difference


def test_holm_on_a_textbook_example():
    # m = 4: sorted 0.005, 0.01, 0.03, 0.04 -> 4·0.005, 3·0.01, 2·0.03, max(1·0.04, 0.06): monotone step-down
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    adjusted = holm([0.2, math.nan, 0.01])
    assert math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02) and adjusted[0] == pytest.approx(0.2)


def test_tost_tells_equivalent_distinguishable_and_undecided_apart():
    rng = np.random.default_rng(0)
    equivalent = rng.normal(0.0, 0.2, 10)
    distinguishable = rng.normal(5.0, 0.5, 10)
    undecided = rng.normal(0.0, 3.0, 5)
    assert tost(equivalent, margin=1.0) < 0.01 and paired_difference(equivalent)["p"] > 0.05
    assert tost(distinguishable, margin=1.0) > 0.99 and paired_difference(distinguishable)["p"] < 0.001
    assert tost(undecided, margin=1.0) > 0.05 and paired_difference(undecided)["p"] > 0.05
    assert math.isnan(tost([1.0], margin=1.0))


def test_the_detectable_difference_is_the_corrected_tests():
    """A table reports Holm-adjusted verdicts, so its detectable difference is taken at α / m: a p-value below
    that level is rejected at whatever step Holm's procedure reaches it, one just above it need not be."""
    rng = np.random.default_rng(0)
    for m in (2, 5, 72):
        p = rng.uniform(0.0, 1.0, m)
        p[0] = 0.999 * family_alpha(m)
        assert holm(p)[0] < 0.05
        p[1:] = 0.0  # the others all smaller: p[0] is tested last, at level α
        p[0] = 1.001 * family_alpha(m)
        assert holm(p)[0] < 0.05
        p[1:] = 1.0  # the others all larger: p[0] is tested first, at level α / m
        assert holm(p)[0] > 0.05
    assert family_alpha(1) == 0.05 and family_alpha(72) == pytest.approx(0.05 / 72)
    assert detectable_difference(1.0, 5, family_alpha(10)) > detectable_difference(1.0, 5)


def test_the_detectable_difference_matches_the_closed_form_and_its_power():
    # large n: the normal approximation (z_{1−α/2} + z_{power}) σ / √n
    closed = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * 2.0 / math.sqrt(2000)
    assert detectable_difference(2.0, 2000) == pytest.approx(closed, rel=2e-3)
    # n = 5: simulated paired t-tests at that difference reject 80 % of the time
    effect = detectable_difference(1.0, 5)
    draws = np.random.default_rng(1).normal(effect, 1.0, (20000, 5))
    rejected = stats.ttest_1samp(draws, 0.0, axis=1).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.8, abs=0.015)
    assert math.isnan(detectable_difference(1.0, 1))


def test_kendall_needs_three_seeds_and_brackets_its_value():
    items = np.arange(6, dtype=float)

    def same(seeds):
        return items, items.copy()

    def reversed_(seeds):
        return items, items[::-1]

    assert all(math.isnan(v) for v in kendall_interval(same, np.array([0, 1])))
    assert kendall_interval(same, np.arange(5), resamples=50) == pytest.approx((1.0, 1.0, 1.0))
    assert kendall_interval(reversed_, np.arange(5), resamples=50) == pytest.approx((-1.0, -1.0, -1.0))


def write_record(folder: Path, method: str, aug: str, rate: float, seed: int, gap: float, nothing: float,
                 floor: float = 0.5) -> None:
    record = {"method": method, "config": {"augmentation": {"name": aug}, "forget_rate": {"mode": "random", "rate": rate},
                                           "seed": seed},
              "metrics": {"avg_gap": gap}, "original_metrics": {"avg_gap": nothing},
              "retrain2_metrics": {"avg_gap": floor}, "diverged": False,
              "regime": {"meets_bar": True, "original_forget_acc": 99.0, "original_retain_acc": 99.5,
                         "original_TA": 55.0}}
    (folder / f"{method}-{aug}-{rate}-{seed}.json").write_text(json.dumps(record))


def study(folder: Path, trivial_gap: float, trivial_nothing: float, seeds: int = 6) -> None:
    rng = np.random.default_rng(2)
    for seed in range(seeds):
        for method in ("ft", "rl", "salun"):
            base = 10.0 + rng.normal(0, 0.3)
            write_record(folder, method, "default", 0.1, seed, base, 20.0)
            write_record(folder, method, "none", 0.1, seed, base + 1.0 + rng.normal(0, 0.3), 20.0)
            write_record(folder, method, "trivialaug", 0.1, seed, base * trivial_gap + rng.normal(0, 0.2),
                         20.0 * trivial_nothing)
        write_record(folder, "retrain", "default", 0.1, seed, 0.0, 20.0)


def test_a_pipeline_that_unlearns_better_is_reproduced(tmp_path):
    study(tmp_path, trivial_gap=0.6, trivial_nothing=1.0)
    frame = augmentation.load(tmp_path)
    effects = augmentation.effects(frame, "default")
    trivial = effects[effects["augmentation"] == "trivialaug"]
    assert set(trivial["outcome"]) == {"closer"} and set(trivial["normalised_outcome"]) == {"lower"}
    assert trivial["relative_change"].between(-45, -35).all()
    verdicts = augmentation.verdicts(effects)
    assert set(verdicts["verdict"]) == {"reproduced"}
    for row in verdicts.to_dict("records"):  # a drop near 40 %: the size column reads each row's own interval
        low, high = row["relative_change"] - row["relative_half"], row["relative_change"] + row["relative_half"]
        assert row["papers_size"] == ("-40 % inside the interval" if low <= -40 <= high else
                                      "smaller drop than -40 %" if low > -40 else "larger drop than -40 %")
    # the detectable difference is the corrected test's, and more seeds at the same spread detect less
    family = len(effects)
    for row in effects.to_dict("records"):
        sd = row["difference_half"] * math.sqrt(row["n"]) / stats.t.ppf(0.975, row["n"] - 1)
        assert row["detectable"] == pytest.approx(detectable_difference(sd, row["n"], family_alpha(family)))
        assert row["detectable_at_5"] > row["detectable_at_10"] > 0
        assert (row["detectable"] > row["detectable_at_5"]) == (row["n"] < 5)


def test_the_claimed_size_is_read_against_the_interval_of_the_relative_change():
    assert claim.against_claimed_size(-10.0, 5.0) == "smaller drop than -40 %"
    assert claim.against_claimed_size(-60.0, 5.0) == "larger drop than -40 %"
    assert claim.against_claimed_size(-30.0, 10.0) == "-40 % inside the interval"  # the edge is inside
    assert claim.against_claimed_size(-30.0, math.nan) == "no interval"


def test_two_seeds_give_no_outcome_however_consistent(tmp_path):
    """With two paired seeds the t-test has one degree of freedom: two nearly equal differences read as
    p ≈ 0. Below three seeds (the small-n rule of a best) a comparison is untested and the claim not settled."""
    study(tmp_path, trivial_gap=0.6, trivial_nothing=1.0, seeds=2)
    effects = augmentation.effects(augmentation.load(tmp_path), "default")
    assert set(effects["outcome"]) == {"2 seeds: untested (needs 3)"}
    assert set(effects["normalised_outcome"]) == {"2 seeds: untested (needs 3)"}
    assert set(augmentation.verdicts(effects)["verdict"]) == {"not settled"}


def test_a_pipeline_whose_original_only_memorises_less_is_not_called_better(tmp_path):
    study(tmp_path, trivial_gap=0.6, trivial_nothing=0.6)  # doing nothing shrinks as much as the method's gap
    frame = augmentation.load(tmp_path)
    verdicts = augmentation.verdicts(augmentation.effects(frame, "default"))
    assert set(verdicts["verdict"]) == {"not settled"}
    assert verdicts["why"].str.contains("normalised gap is not lower").all()


def test_the_report_writes_its_tables_and_refuses_a_missing_folder(tmp_path):
    (tmp_path / "records").mkdir()
    study(tmp_path / "records", trivial_gap=1.0, trivial_nothing=1.0)
    done = subprocess.run([sys.executable, "-m", "unlearn_bench.report.augmentation", "--records",
                           str(tmp_path / "records"), "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for name in ("pipeline_effects.md", "pipeline_effects.csv", "pipeline_rankings.csv", "verdicts.csv", "regime.csv"):
        assert (tmp_path / "out" / name).is_file()
    regime = (tmp_path / "out" / "regime.csv").read_text()
    assert "forget_acc" in regime and "99.0" in regime
    rankings = (tmp_path / "out" / "pipeline_rankings.csv").read_text()
    assert "ft,rl" in rankings
    bad = subprocess.run([sys.executable, "-m", "unlearn_bench.report.augmentation", "--records",
                          str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--records" in bad.stderr


def test_the_pool_size_curve_follows_the_held_out_pool_and_every_row_as_n_grows(tmp_path):
    """Pool records of one setting at N = 8 and 16 (copies of a committed record with other scores): the
    leaderboard writes one curve row per N and row, with the held-out pool's F at each N, and its plot."""
    import copy
    import json
    from pathlib import Path

    import pandas as pd

    from unlearn_bench.report import leaderboard

    source = next(p for p in sorted((Path(__file__).resolve().parent.parent / "results" / "records").glob("*.json"))
                  if json.loads(p.read_text()).get("task") == "pool")
    base = json.loads(source.read_text())
    records = tmp_path / "records"
    records.mkdir()
    for n_models, held_out_f in ((8, 0.11), (16, 0.19)):
        record = copy.deepcopy(base)
        record["config"]["eval"]["pool_size"] = n_models
        record["retrain2_metrics"]["forgetting_quality"] = held_out_f
        (records / f"{n_models}.json").write_text(json.dumps(record))
    other_set = copy.deepcopy(record)  # a second forget set at N = 16 only: the curve holds the sets fixed
    other_set["config"]["seed"] = base["config"]["seed"] + 1
    other_set["retrain2_metrics"]["forgetting_quality"] = 0.5
    (records / "16-other-set.json").write_text(json.dumps(other_set))
    out = tmp_path / "board"
    assert leaderboard.main(["--task", "pool", "--records", str(records), "--out", str(out)]) == 0
    curve = pd.read_csv(out / "pool_size_curve.csv")
    held = curve[curve["method"] == "retrain floor"].set_index("N")["forgetting_quality_mean"]
    assert held.to_dict() == {8: 0.11, 16: 0.19}
    assert set(curve["N"]) == {8, 16} and (curve["n"] == 1).all()
    assert "## How many models a verdict needs" in (out / "leaderboard.md").read_text()
    assert (out / "pool_size_curve.png").is_file()


def test_the_pool_size_curve_keeps_a_second_design_where_smaller_pools_have_more_forget_sets():
    """N = 8 and 16 scored on forget sets 0 and 1, N = 32 on set 0 only: one design compares every N on set 0,
    a second compares 8 and 16 on both sets; no design mixes forget sets along N."""
    from unlearn_bench.report.pool_curve import curve_designs

    assert curve_designs({8: {0, 1}, 16: {0, 1}, 32: {0}}) == [([8, 16, 32], {0}), ([8, 16], {0, 1})]
    assert curve_designs({8: {0}, 16: {0, 1}}) == [([8, 16], {0})]  # the wider set has one N only
    assert curve_designs({8: {0}, 16: {1}}) == []  # no shared forget set, no second N on one


def test_the_pool_size_curve_writes_one_block_per_design(tmp_path):
    import copy
    import json
    from pathlib import Path

    import pandas as pd

    from unlearn_bench.report import leaderboard

    source = next(p for p in sorted((Path(__file__).resolve().parent.parent / "results" / "records").glob("*.json"))
                  if json.loads(p.read_text()).get("task") == "pool")
    base = json.loads(source.read_text())
    records = tmp_path / "records"
    records.mkdir()
    for n_models, seeds in ((8, (0, 1)), (16, (0, 1)), (32, (0,))):
        for seed in seeds:
            record = copy.deepcopy(base)
            record["config"]["eval"]["pool_size"], record["config"]["seed"] = n_models, seed
            record["retrain2_metrics"]["forgetting_quality"] = n_models / 100 + seed / 1000
            (records / f"{n_models}-{seed}.json").write_text(json.dumps(record))
    out = tmp_path / "board"
    assert leaderboard.main(["--task", "pool", "--records", str(records), "--out", str(out)]) == 0
    curve = pd.read_csv(out / "pool_size_curve.csv")
    held = curve[curve["method"] == "retrain floor"]
    one = held[held["design"] == "N = 8, 16, 32 on forget set 0"].set_index("N")["forgetting_quality_mean"]
    two = held[held["design"] == "N = 8, 16 on forget sets 0, 1"].set_index("N")["forgetting_quality_mean"]
    assert one.to_dict() == pytest.approx({8: 0.08, 16: 0.16, 32: 0.32})
    assert two.to_dict() == pytest.approx({8: 0.0805, 16: 0.1605})
    assert (held.groupby("design")["n"].max() == pd.Series({"N = 8, 16 on forget sets 0, 1": 2,
                                                             "N = 8, 16, 32 on forget set 0": 1})).all()
    text = (out / "leaderboard.md").read_text()
    assert "(N = 8, 16, 32 on forget set 0)" in text and "(N = 8, 16 on forget sets 0, 1)" in text


def test_the_pool_size_agreement_is_kendall_tau_per_forget_set_between_two_sizes():
    """Known answer: four methods in the same order at N = 8 and 16 on forget set 0 (τ = 1) and with one pair
    swapped on forget set 1 (τ = 4/6): mean 5/6 over the two sets; the reference rows are not ranked."""
    import json

    import pandas as pd

    from unlearn_bench.report.pool_curve import pool_size_agreement

    order = {0: {8: [4, 3, 2, 1], 16: [4, 3, 2, 1]}, 1: {8: [4, 3, 2, 1], 16: [3, 4, 2, 1]}}
    rows = [{"task": "pool", "dataset": "d", "forget": "f", "seed": seed, "method": method, "reference": False,
             "final_score": float(score), "setting_sig": json.dumps({"eval.pool_size": json.dumps(n)})}
            for seed, sizes in order.items() for n, scores in sizes.items()
            for method, score in zip("abcd", scores)]
    rows += [{**rows[0], "method": "retrain floor", "reference": True, "final_score": 0.0, "seed": s,
              "setting_sig": json.dumps({"eval.pool_size": json.dumps(n)})} for s in (0, 1) for n in (8, 16)]
    found = pool_size_agreement(pd.DataFrame(rows))
    (row,) = found.to_dict("records")
    assert (row["from_N"], row["to_N"], row["methods"], row["n"]) == (8, 16, 4, 2)
    assert row["tau_mean"] == pytest.approx(5 / 6)


def test_a_partial_seed_is_left_out_of_the_comparisons_until_its_grid_is_complete(tmp_path):
    """A grid that runs seed by seed has one partial seed: by default the comparisons use the complete seeds
    only (every pair of a family at the same n) and the report names the partial one; --partial-seeds adds it."""
    study(tmp_path, trivial_gap=0.6, trivial_nothing=1.0, seeds=3)
    write_record(tmp_path, "ft", "default", 0.1, 3, 9.0, 20.0)
    write_record(tmp_path, "ft", "trivialaug", 0.1, 3, 5.0, 20.0)
    frame = augmentation.load(tmp_path)
    assert augmentation.complete_seeds(frame) == ([0, 1, 2], {3: "2 of its 10 cells, retrain included"})
    text = augmentation.write(frame, tmp_path / "out")
    assert "Seeds compared below: 0, 1, 2; left out until their grid is complete" in text and "3 (2 of its 10 cells, retrain included)" in text
    effects = pd.read_csv(tmp_path / "out" / "pipeline_effects.csv")
    assert set(effects["n"]) == {3}
    augmentation.write(frame, tmp_path / "all", partial_seeds=True)
    effects = pd.read_csv(tmp_path / "all" / "pipeline_effects.csv")
    assert set(effects.loc[(effects["method"] == "ft") & (effects["augmentation"] == "trivialaug")
                           & (effects["baseline"] == "default"), "n"]) == {4}


def test_the_papers_estimator_averages_each_metric_over_seeds_before_the_gap():
    """Known answer: UA 10 and 20 against a retrain at 12 on two seeds: per-seed gaps 2 and 8 (mean 5), gap of
    means |15 − 12| = 3; with RA equal everywhere the Avg Gap over {UA, RA} is 1.5. A pipeline at half that
    gap is a −50 % change in the papers' terms."""
    rows = pd.DataFrame({"method:UA": [10.0, 20.0], "retrain:UA": [12.0, 12.0],
                         "method:RA": [99.0, 99.0], "retrain:RA": [99.0, 99.0]})
    assert claim.gap_of_means(rows) == pytest.approx(1.5)
    frame = pd.concat([rows.assign(method="ft", rate="r", seed=[0, 1], augmentation="default"),
                       rows.assign(**{"method:UA": [11.0, 16.0]}, method="ft", rate="r", seed=[0, 1],
                                   augmentation="trivialaug")])
    assert claim.relative_change_of_means(frame, "ft", "r", [0, 1], "trivialaug", "default") == pytest.approx(-50.0)
    assert math.isnan(claim.gap_of_means(pd.DataFrame({"method:UA": [1.0]})))  # no retrain metric


def test_the_closest_combination_is_named_only_below_its_own_doing_nothing(tmp_path):
    """Every method × pipeline of a rate in one family: the lowest mean gap is the best where it is below its
    own doing nothing, the rows far from it are distinguishable; where the lowest sits at its doing nothing,
    no best is named and the table says which it was."""
    rng = np.random.default_rng(4)
    (tmp_path / "a").mkdir()
    for seed in range(5):
        for method, aug, gap in (("rl", "none", 2.0), ("rl", "default", 2.5), ("ft", "none", 9.0), ("ft", "default", 9.5)):
            write_record(tmp_path / "a", method, aug, 0.1, seed, gap + rng.normal(0, 0.2), 10.0)
    table = augmentation.combinations(augmentation.load(tmp_path / "a"))
    best = table[table["best"]]
    assert list(zip(best["method"], best["augmentation"])) == [("rl", "none")]
    far = table[table["method"] == "ft"]
    assert (far["p_vs_best_holm"] < 0.05).all() and not far["tied_with_best"].any()
    assert "Closest to retrain: **rl with none**" in augmentation.combinations_markdown(table)

    (tmp_path / "b").mkdir()
    for seed in range(5):  # the lowest gap equals its doing nothing's: no best
        write_record(tmp_path / "b", "ga", "none", 0.1, seed, 5.0 + rng.normal(0, 0.5), 5.0)
        write_record(tmp_path / "b", "ft", "none", 0.1, seed, 9.0 + rng.normal(0, 0.5), 10.0)
    table = augmentation.combinations(augmentation.load(tmp_path / "b"))
    assert not table["best"].any()
    assert "No best: the lowest mean gap (ga with none" in augmentation.combinations_markdown(table)


def test_the_combinations_figure_frames_the_best_and_its_ties(tmp_path):
    """One panel per rate, a cell per method × pipeline with its value, a red frame on the best and on each
    combination not distinguishable from it (and on no other), tick labels apart, under 2,000 px wide."""
    from matplotlib.patches import Rectangle

    from unlearn_bench.report.plots import plot_combinations

    rng = np.random.default_rng(5)
    for seed in range(4):
        for rate in (0.1, 0.5):
            for method, aug, gap in (("rl", "none", 2.0), ("rl", "default", 2.1), ("ft", "none", 9.0), ("ft", "default", 9.5)):
                write_record(tmp_path, method, aug, rate, seed, gap + rng.normal(0, 0.2), 10.0)
    table = augmentation.combinations(augmentation.load(tmp_path))
    fig = plot_combinations(table, tmp_path / "c.png", "test", augmentation.PIPELINES)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 2 and (tmp_path / "c.png").is_file()
    frames = sum(isinstance(p, Rectangle) and p.get_edgecolor()[:3] == (1.0, 0.0, 0.0) for ax in panels for p in ax.patches)
    assert frames == int(table["tied_with_best"].sum()) >= 2
    assert sum(len(ax.texts) for ax in panels) == len(table)
    for ax in panels:
        boxes = [t.get_window_extent() for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert fig.get_size_inches()[0] * fig.dpi <= 2000
