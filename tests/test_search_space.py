"""Each classification method declares its tuning space (docs/tuning.md); a bad space is one line before any
training; the space is not part of a cell's identity."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from omegaconf import open_dict

from unlearn_bench import tracking
from unlearn_bench.errors import ConfigError
from unlearn_bench.methods import check_method
from unlearn_bench.run import run
from unlearn_bench.validate import check_search, validate

ROOT = Path(__file__).resolve().parent.parent
TUNABLE_METHODS = ["ft", "rl", "ga", "iu", "l1_sparse", "boundary_expanding", "boundary_shrink", "salun", "manif_smc",
                   "neggrad_plus", "scrub", "bad_teacher", "ssd", "fisher", "cf_k", "eu_k", "scar", "msg", "ct", "unsir"]
CLASS_WISE_ONLY = ("unsir",)


@pytest.mark.parametrize("method", TUNABLE_METHODS)
def test_every_search_space_composes_and_lies_inside_the_methods_checks(make_cfg, method):
    # The default small CNN (three blocks: CF-k / EU-k's k up to 3), class-wise where a method needs it.
    cfg = make_cfg(f"method={method}", *(["forget_rate=class"] if method in CLASS_WISE_ONLY else []), tiny=False)
    space = cfg.method.search
    assert space, f"{method} declares no search space"
    check_search(cfg.method)
    for key, spec in space.items():
        for bound in (spec.low, spec.high):
            probe = cfg.copy()
            with open_dict(probe):
                probe.method[key] = bound
            validate(probe)
            check_method(probe.method)  # the method's own switches accept every bound of its space
    comments = (ROOT / "conf" / "method" / f"{method}.yaml").read_text()
    assert "search:" in comments and "Tuning space" in comments  # the range says where it comes from


@pytest.mark.parametrize(("override", "expected"), [
    ("method.search.lr.low=0.5", "method.search.lr.high=0.1"),          # inverted
    ("method.search.lr.high=0.0001", "method.search.lr.high=0.0001"),   # empty (low == high)
    ("++method.search.lrr={low:0.1,high:1.0}", "method.search.lrr"),    # a key the method does not have
    ("method.search.lr.low=0", "method.search.lr.low=0"),              # log range through 0
    ("method.search.epochs.high=2.5", "method.search.epochs.high=2.5"),  # int range, float bound
])
def test_a_bad_search_space_is_one_line_before_training(make_cfg, tmp_path, override, expected):
    with pytest.raises(ConfigError) as err:
        run(make_cfg("method=ft", override))
    assert expected in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.pt"))


def test_the_search_space_is_not_part_of_a_cells_identity(make_cfg):
    cfg = make_cfg("method=ft")
    wider = make_cfg("method=ft", "method.search.lr.high=0.5")
    assert "search" not in tracking.cell_config(cfg)["method"]
    assert tracking.cell_id(cfg) == tracking.cell_id(wider)


def test_tuning_writes_a_method_config_inside_the_space_from_disjoint_seeds_and_resumes(workdirs, tmp_path):

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from unlearn_bench.tuning import study as tune

    overrides = [o for o in workdirs if not o.startswith("paths.records_dir")]
    overrides += ["dataset=digits", "model=small_cnn", "++model.widths=[8,16]", "model.head_pool=1",
                  "train.epochs=3", "train.batch_size=64", "dataset.train_size=null", "dataset.test_size=null",
                  "relearn.enabled=false", "num_threads=null"]
    with pytest.raises(ConfigError, match="disjoint"):
        tune.tune("ft", "cpu", "oracle", 2, [0, 100], [0, 1], overrides, tmp_path / "trials", tmp_path / "conf" / "method")
    with pytest.raises(ConfigError, match="--trials=0"):
        tune.tune("ft", "cpu", "oracle", 0, [100], [0], overrides, tmp_path / "trials", tmp_path / "conf" / "method")
    path = tune.tune("ft", "cpu", "oracle", 2, [100], [0, 1, 2, 3, 4], [*overrides, "method.search.epochs.high=2"],
                     tmp_path / "trials", tmp_path / "conf" / "method")
    tuned = OmegaConf.load(path)
    assert 1e-4 <= tuned.lr <= 0.1 and 1 <= tuned.epochs <= 2 and "tuning seeds 100" in path.read_text()
    assert "(1 random startup trials" in path.read_text()  # half of 2 trials: TPE proposes the second
    trial_records = list((tmp_path / "trials").glob("*.json"))
    assert len(trial_records) >= 1 and not (tmp_path / "records").exists()  # trials never reach the records
    assert_summary_matches(path, tmp_path, "oracle")
    written = {p: p.stat().st_mtime_ns for p in trial_records}

    # A rerun replays the study from its trial records, here in a worker process (--jobs): the seeded sampler
    # proposes the same values, every trial cell is skipped, and the same values are written.
    path.unlink()
    code = tune.main(["--method", "ft", "--jobs", "2", "--tuning-seeds", "100", "--trials", "2",
                      "--trial-records", str(tmp_path / "trials"), "--out", str(tmp_path / "conf" / "method"),
                      "--", *overrides, "method.search.epochs.high=2"])
    assert code == 0 and OmegaConf.load(path) == tuned
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "trials").glob("*.json")} == written
    assert tune.main(["--method", "ft", "--jobs", "0", "--", *overrides]) == 2
    for contradiction in ("method=rl", "scale=paper", "eval=pool", "seed=3"):  # the study's own choices
        assert tune.main(["--method", "ft", "--", *overrides, contradiction]) == 2
    # under another name: the checkout's own conf/method/tuned/cpu/oracle/ft.yaml comes first on the search path
    (tmp_path / "conf" / "method" / "test_tuned").mkdir()
    path.rename(tmp_path / "conf" / "method" / "test_tuned" / "ft.yaml")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
                                           "method=test_tuned/ft"])
    assert cfg.method.name == "ft" and cfg.method.lr == tuned.lr and cfg.method.label == "ft (tuned, oracle)"


def test_the_zoo_is_checked_whole_before_the_first_trial(tmp_path, capsys):
    """`--method a,b,c` tunes each with the same budget; an unknown name anywhere fails first, with exit 2."""
    import re

    from unlearn_bench.tuning import study as tune

    trials = tmp_path / "trials"
    code = tune.main(["--method", "ft,rl,not_a_method", "--trial-records", str(trials), "--out", str(tmp_path)])
    assert code == 2 and "not_a_method" in capsys.readouterr().err and not trials.exists()
    for bad, named in ((["--trials", "0"], "--trials=0"), (["--track", "oracel"], "--track='oracel'"),
                       (["--tuning-seeds", "0,100"], "--tuning-seeds=[0, 100]"),
                       (["--trials", "4", "--startup-trials", "5"], "--startup-trials=5"),
                       (["--startup-trials", "0"], "--startup-trials=0")):  # before any worker starts
        assert tune.main(["--method", "ft,rl", "--jobs", "2", *bad, "--trial-records", str(trials)]) == 2
        assert named in capsys.readouterr().err and not trials.exists()
    # an error raised inside a worker process (--jobs) reaches the parent as itself, still one line
    import pickle

    error = pickle.loads(pickle.dumps(ConfigError("method.lr", -1.0, "a float > 0")))
    assert isinstance(error, ConfigError) and str(error) == "method.lr=-1.0 is not valid; accepted: a float > 0"
    zoo = re.search(r"^ZOO := (.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1).split(",")
    assert sorted(zoo) == sorted(m for m in TUNABLE_METHODS if m not in ("manif_smc", "unsir"))


def test_the_blind_track_tunes_without_a_retrain_model_on_images_outside_t(workdirs, tmp_path, capsys):

    from omegaconf import OmegaConf

    from unlearn_bench.tuning import study as tune

    overrides = [o for o in workdirs if not o.startswith("paths.records_dir")]
    overrides += ["dataset=digits", "model=small_cnn", "++model.widths=[8,16]", "model.head_pool=1",
                  "train.epochs=3", "train.batch_size=64", "dataset.train_size=null", "dataset.test_size=200",
                  "eval.validation_size=100", "num_threads=null"]
    path = tune.tune("ft", "cpu", "blind", 2, [100], [0, 1, 2, 3, 4], [*overrides, "method.search.epochs.high=2"],
                     tmp_path / "trials", tmp_path / "conf" / "method")
    assert "blind objective" in path.read_text() and OmegaConf.load(path).label == "ft (tuned, blind)"
    out = capsys.readouterr().out
    assert "retrain: " not in out and "original: " in out  # no retrain model is trained or loaded
    records = [__import__("json").loads(p.read_text()) for p in (tmp_path / "trials").glob("*.json")]
    assert records and all(r["task"] == "blind" and "retrain_metrics" not in r for r in records)
    assert_summary_matches(path, tmp_path, "blind")


def assert_summary_matches(path: Path, tmp_path: Path, track: str) -> None:
    """unlearn-bench-tuning-summary reads the study back from its trial records: the best it finds is the one
    the generated YAML declares, with its values."""
    import re

    import pandas as pd
    from omegaconf import OmegaConf

    from unlearn_bench.tuning import summary as tuning_summary

    assert tuning_summary.main(["--trial-records", str(tmp_path / "trials"), "--out", str(tmp_path / "summary")]) == 0
    study = pd.read_csv(tmp_path / "summary" / "studies.csv").iloc[0]
    declared = float(re.search(r"best mean [a-zA-Z ]+ (\d+\.\d+)", path.read_text()).group(1))
    assert (study["track"], study["method"], str(study["tuning_seeds"])) == (track, "ft", "100")
    assert study["trials_finished"] == study["trials_begun"] <= 2 and study["cells"] == study["trials_begun"]
    assert round(study["best_objective"], 4) == declared
    tuned = OmegaConf.load(path)
    assert all(tuned[k] == v for k, v in __import__("json").loads(study["best_values"]).items())


def test_the_validation_split_never_overlaps_t_and_is_refused_when_t_leaves_none(make_cfg, tmp_path):
    from pathlib import Path as P

    import torch

    from unlearn_bench.data import load_dataset
    from unlearn_bench.errors import UserError
    from unlearn_bench.evaluation.blind import validation_split

    cfg = make_cfg("eval=blind", "dataset.test_size=200", "eval.validation_size=100")
    dataset = load_dataset(cfg.dataset, P(cfg.paths.data_root), tmp_path)
    validation = validation_split(cfg, dataset.unused_test, torch.device("cpu"))
    t = {bytes(x.numpy()) for x in dataset.test.images}
    assert len(validation) == 100 and not any(bytes(x.numpy()) in t for x in validation.images)
    with pytest.raises(UserError, match="eval.validation_size=100"):
        run(make_cfg("eval=blind", "dataset.test_size=null", "eval.validation_size=100", "method=ft"))
    assert not list((tmp_path / "cache").glob("*.pt")) if (tmp_path / "cache").exists() else True


def test_the_blind_objective_on_known_cases():
    """D_f answered exactly as the held-out images: no forget gap; nothing lost: no utility terms; a drop
    below the original's accuracies is charged point for point; the objective is the sum of its parts."""
    from omegaconf import OmegaConf

    from unlearn_bench.evaluation.blind import PARTS, blind_parts

    mia = OmegaConf.create({"C": 3, "gamma": "auto", "kernel": "rbf"})
    import torch

    gen = torch.Generator().manual_seed(0)
    labels = {name: torch.randint(0, 3, (n,), generator=gen) for name, n in
              (("forget", 40), ("retain", 80), ("validation", 80))}
    logits = {name: torch.randn(len(y), 3, generator=gen) for name, y in labels.items()}
    logits["forget"] = logits["validation"].clone()  # D_f answered exactly like the held-out images
    labels["forget"] = labels["validation"].clone()
    values = blind_parts(logits, labels, {}, mia)
    assert values["forget_gap"] == 0.0 and values["retain_loss"] == 0.0 and values["validation_loss"] == 0.0
    assert values["blind_objective"] == pytest.approx(sum(values[p] for p in PARTS))
    worse = blind_parts(logits, labels, {"RA": values["RA"] + 10.0, "acc_validation": values["acc_validation"] + 5.0}, mia)
    assert worse["retain_loss"] == pytest.approx(10.0) and worse["validation_loss"] == pytest.approx(5.0)


COMMITTED_TUNED = sorted((ROOT / "conf" / "method" / "tuned").glob("*/*/*.yaml"))


@pytest.mark.parametrize("path", COMMITTED_TUNED, ids=[p.relative_to(ROOT / "conf" / "method").as_posix()
                                                        for p in COMMITTED_TUNED])
def test_every_committed_tuned_config_composes_inside_its_space_from_disjoint_seeds(make_cfg, path):
    scale, track, method = path.relative_to(ROOT / "conf" / "method" / "tuned").with_suffix("").parts
    cfg = make_cfg(f"method=tuned/{scale}/{track}/{method}", tiny=False)
    validate(cfg)
    check_method(cfg.method)
    assert cfg.method.name == method and cfg.method.label == f"{method} (tuned, {track})"
    text = path.read_text()
    for key, spec in cfg.method.search.items():  # every searched key was chosen, inside its range
        assert key in text and spec.low <= cfg.method[key] <= spec.high
    tuning = {int(s) for s in re.search(r"tuning seeds ([\d,]+)", text).group(1).split(",") if s}
    evaluation = {int(s) for s in re.search(r"evaluation seeds ([\d,]+)", text).group(1).split(",") if s}
    assert tuning and evaluation and not tuning & evaluation and "unlearn-bench-tune" in text
