"""Each classification method declares its tuning space (SPEC §10); a bad space is one line before any
training; the space is not part of a cell's identity."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import open_dict

from unlearn_bench import tracking
from unlearn_bench.errors import ConfigError
from unlearn_bench.methods import check_method
from unlearn_bench.run import run
from unlearn_bench.validate import check_search, validate

ROOT = Path(__file__).resolve().parent.parent
TUNABLE_METHODS = ["ft", "rl", "ga", "iu", "l1_sparse", "boundary_expanding", "boundary_shrink", "salun", "manif_smc"]


@pytest.mark.parametrize("method", TUNABLE_METHODS)
def test_every_search_space_composes_and_lies_inside_the_methods_checks(make_cfg, method):
    cfg = make_cfg(f"method={method}")
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


def test_tuning_writes_a_method_config_inside_the_space_from_disjoint_seeds(workdirs, tmp_path):
    import sys

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    sys.path.insert(0, str(ROOT / "scripts"))
    import tune

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
    trial_records = list((tmp_path / "trials").glob("*.json"))
    assert len(trial_records) >= 1 and not (tmp_path / "records").exists()  # trials never reach the records
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
                                           "method=tuned/cpu/oracle/ft"])
    assert cfg.method.name == "ft" and cfg.method.lr == tuned.lr and cfg.method.label == "ft (tuned, oracle)"
