"""The runner: cache reuse, determinism, records, bad input."""

import json
import re

import pytest

from unlearn_bench.errors import ConfigError, UserError
from unlearn_bench.run import run


def test_second_method_on_the_same_cell_hits_the_cache(make_cfg, capsys):
    first = run(make_cfg("method=ft"))
    assert "original: trained" in capsys.readouterr().out
    second = run(make_cfg("method=salun"))
    out = capsys.readouterr().out
    assert "original: cache hit" in out and "retrain: cache hit" in out
    assert first["models"] == second["models"]
    for key in ("UA", "RA", "TA", "MIA", "avg_gap", "RTE"):
        assert key in second["metrics"]
    assert second["retrain_metrics"]["avg_gap"] == 0.0


def test_original_model_is_shared_across_forget_rates(make_cfg, capsys):
    run(make_cfg("method=ft"))
    capsys.readouterr()
    run(make_cfg("method=ft", "forget_rate=random_50"))
    out = capsys.readouterr().out
    assert "original: cache hit" in out and "retrain: trained" in out


def test_same_config_and_seed_give_identical_metrics(make_cfg, tmp_path):
    a = run(make_cfg("method=salun"))
    b = run(make_cfg("method=salun", "force=true", f"paths.cache_dir={tmp_path / 'other-cache'}"))
    assert a["metrics"] | {"RTE": 0} == b["metrics"] | {"RTE": 0}
    assert a["retrain_metrics"] | {"RTE": 0} == b["retrain_metrics"] | {"RTE": 0}


def test_record_is_written_and_a_finished_cell_is_skipped(make_cfg, capsys):
    cfg = make_cfg("method=ft")
    record = run(cfg)
    path = next((p for p in (cfg.paths.records_dir,)), None)
    files = list(__import__("pathlib").Path(path).glob("ft-*.json"))
    assert len(files) == 1
    stored = json.loads(files[0].read_text())
    assert stored["metrics"] == record["metrics"] and stored["config"]["method"]["name"] == "ft"
    assert stored["packages"]["torch"] and "git_commit" in stored
    assert stored["machine"]["cpu"] and stored["machine"]["threads"] >= 1 and "cpu_capability" in stored["machine"]
    assert stored["models"]["original"]["machine"]["cpu"] == stored["machine"]["cpu"]  # where it was trained
    capsys.readouterr()
    again = run(cfg)
    out = capsys.readouterr().out
    assert "skip: cell" in out and again["metrics"] == record["metrics"]
    # the finished cell's table, regime and verdict again, from its record
    assert "retrain floor" in out and "regime:" in out and "record:" in out and out.count("\n") >= 6


def test_class_wise_forgetting_reports_forgotten_class_accuracy(make_cfg):
    record = run(make_cfg("method=retrain", "forget_rate=class", "forget_rate.class_id=2", "train.epochs=4"))
    assert record["metrics"]["forget_TA"] < 5.0  # the retrained model never saw class 2
    assert record["original_metrics"]["forget_TA"] > 50.0


@pytest.mark.parametrize("override, error", [("forget_rate.rate=1.5", ConfigError),
                                             ("device=tpu", ConfigError),
                                             ("train.epochs=0", ConfigError),
                                             ("method.lr=-1", ConfigError)])
def test_bad_values_raise_user_errors(make_cfg, override, error):
    with pytest.raises(error):
        run(make_cfg(override))


def test_unwritable_cache_dir_is_a_user_error(make_cfg, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="paths.cache_dir"):
        run(make_cfg(f"paths.cache_dir={blocker / 'sub'}"))


def test_reference_evaluations_are_cached_and_a_corrupt_entry_is_recomputed(make_cfg, tmp_path, caplog):
    """Every method of a cell shares the retrain/original metrics: computed once, stored, and the same
    numbers as a fresh computation; a damaged stored result is recomputed, never trusted."""
    first = run(make_cfg("method=ft", "relearn.enabled=true"))
    cache = tmp_path / "cache"
    stored = sorted(cache.glob("retrain-eval-*/result.json")) + sorted(cache.glob("original-eval-*/result.json"))
    assert len(stored) == 2
    assert json.loads(stored[0].read_text())["result"]["relearn_FA"] == first["retrain_metrics"]["relearn_FA"]
    stored[0].write_text('{"result": ')  # truncated
    second = run(make_cfg("method=salun", "relearn.enabled=true"))
    assert "corrupted" in caplog.text
    fresh = run(make_cfg("method=salun", "relearn.enabled=true", "force=true",
                         f"paths.cache_dir={tmp_path / 'fresh-cache'}"))
    for record in (second, fresh):
        assert record["retrain_metrics"] | {"RTE": 0} == first["retrain_metrics"] | {"RTE": 0}
        assert record["original_metrics"] == first["original_metrics"]


def test_a_key_of_a_stage_that_is_off_is_refused_not_silently_added_to_the_cell_id(make_cfg):
    """relearn.lr with relearn.enabled=false would only change the cell id: refused in one line naming the key
    and the switch; the same key with the stage on, and the switch itself, pass."""
    from unlearn_bench.errors import ConfigError
    from unlearn_bench.validate import check_overrides

    off = make_cfg("relearn.enabled=false", "relearn.lr=0.5")
    with pytest.raises(ConfigError, match=r"^relearn\.lr=0\.5 is not valid; accepted: no value while relearn\.enabled=false"):
        check_overrides(off, ["relearn.enabled=false", "relearn.lr=0.5"])
    check_overrides(make_cfg("relearn.enabled=true", "relearn.lr=0.5"), ["relearn.enabled=true", "relearn.lr=0.5"])
    check_overrides(off, ["relearn.enabled=false", "method=ft"])


@pytest.mark.parametrize("overrides, key", [
    (["metrics.names=[UA,RA,TA]", "metrics.gap_over=[UA,RA,TA]", "metrics.mia.C=10"], "metrics.mia.C"),
    (["train.scheduler=cosine", "train.milestones=[0.3,0.6]"], "train.milestones"),
    (["train.scheduler=constant", "train.gamma=0.5"], "train.gamma"),
])
def test_every_conditionally_read_key_is_refused_where_its_condition_fails(make_cfg, overrides, key):
    """The same rule for every key read only under a condition: MIA's settings without MIA, a MultiStep
    schedule's milestones and γ under another schedule. With the condition met they pass."""
    from unlearn_bench.errors import ConfigError
    from unlearn_bench.validate import check_overrides

    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}=.* is not valid; accepted: no value while"):
        check_overrides(make_cfg(*overrides), overrides)
    check_overrides(make_cfg(overrides[-1]), [overrides[-1]])


def test_the_cli_refuses_a_stage_off_key_with_exit_code_2(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "unlearn_bench.run", "relearn.lr=0.5", "logger=none",
                           f"paths.records_dir={tmp_path}/records", f"paths.cache_dir={tmp_path}/cache",
                           f"paths.output_dir={tmp_path}/out"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error: relearn.lr=0.5")
    assert not (tmp_path / "cache").exists()  # refused before any model was built
