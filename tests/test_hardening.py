"""Classes of input and fault an outside probe found: nothing silently ignored or reinterpreted, one line
instead of a traceback, nothing lost, files a shared cache can read, W&B runs with their content, help."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from unlearn_bench import run as runner
from unlearn_bench.errors import ConfigError, UserError
from unlearn_bench.run import run

from .conftest import SHARED_DATA, unless_given

ROOT = Path(__file__).resolve().parent.parent
TINY_CLI = ["logger=none", "progress=false", "train.epochs=3", "train.batch_size=64", "++model.widths=[8,16]"]


def cli(tmp_path: Path, *overrides: str, env: dict | None = None, timeout: int = 300,
        tiny: list[str] = TINY_CLI) -> subprocess.CompletedProcess:
    defaults = [*tiny, f"paths.cache_dir={tmp_path / 'cache'}", f"paths.records_dir={tmp_path / 'records'}",
                f"paths.output_dir={tmp_path / 'outputs'}", f"paths.data_root={SHARED_DATA}"]
    args = [sys.executable, "-m", "unlearn_bench.run", *unless_given(defaults, overrides), *overrides]
    return subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def one_line(done: subprocess.CompletedProcess, code: int = 2) -> str:
    lines = [line for line in done.stderr.strip().splitlines() if line.startswith("error:")]
    assert done.returncode == code and len(lines) == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    return lines[0]


# --- 1. nothing silently ignored or silently wrong ----------------------------------------------------------
@pytest.mark.parametrize(("overrides", "key"), [
    (["forget_rate.class_id=3"], "forget_rate.class_id=3"),                    # class id in random forgetting
    (["forget_rate=class", "forget_rate.rate=0.2"], "forget_rate.rate=0.2"),   # a rate in class-wise forgetting
    (["method.lr=nan"], "method.lr=nan"),
    (["train.lr=inf"], "train.lr=inf"),
    (["relearn.lr=nan", "relearn.enabled=true"], "relearn.lr=nan"),
    (["train.epochs=2.5"], "train.epochs=2.5"),                                # 2. wrong type
    (["train.batch_size=true"], "train.batch_size=True"),
    (["method.epochs=1.5"], "method.epochs=1.5"),
    (["train.milestones=[0.9,0.5]"], "train.milestones"),
    (["metrics.gap_over=[UA,XX]"], "metrics.gap_over"),                       # 2. metric settings
    (["metrics.names=[UA,RA,TA,MIA,nope]"], "metric.name='nope'"),
    (["metrics.mia.kernel=cubic"], "metrics.mia.kernel='cubic'"),
    (["metrics.mia.C=0"], "metrics.mia.C=0"),
    (["num_threads=0"], "num_threads=0"),
])
def test_bad_values_fail_before_any_work(make_cfg, tmp_path, overrides, key):
    with pytest.raises(ConfigError) as err:
        run(make_cfg(*overrides))
    assert key in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_bad_device_fails_even_when_the_cell_has_a_record(make_cfg):
    run(make_cfg("method=ft"))
    with pytest.raises(ConfigError, match="device='tpu'"):
        run(make_cfg("method=ft", "device=tpu"))


def dry_make(*args: str) -> str:
    """`make -n` as a user types it, also when the tests themselves run under `make test` (a sub-make
    prints directory lines and inherits the parent's MAKEFLAGS)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}
    return subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True).stdout


def test_make_run_hands_its_variables_to_the_runner():
    out = dry_make("run", "method=ft", "seed=1", "WANDB_MODE=offline")
    [command] = [line for line in out.splitlines() if "unlearn_bench.run" in line]
    assert "method=ft" in command and "seed=1" in command and "WANDB_MODE" not in command
    assert "--records /x/records" in dry_make("leaderboard", "UNLEARN_BENCH_RECORDS=/x/records")


@pytest.mark.parametrize("args", ["-m method=ft,rl seed=0,1", "--cfg job -p paths"])
def test_make_run_passes_args_whole(args):
    [command] = [line for line in dry_make("run", f"ARGS={args}").splitlines() if "unlearn_bench.run" in line]
    assert command.split("unlearn_bench.run", 1)[1].split() == args.split()


def test_make_sweep_names_its_preset_and_keeps_the_committed_records_apart():
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}
    refused = subprocess.run(["make", "--no-print-directory", "sweep"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "EXP is not set" in refused.stderr and "salun_table" in refused.stderr
    assert "paths.records_dir=records" in dry_make("sweep", "EXP=salun_table")
    assert "paths.records_dir=results/records" in dry_make("sweep", "EXP=salun_table", "RECORDS=results/records")
    helped = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, env=env, capture_output=True,
                            text=True, check=True).stdout
    assert "$$" not in helped and "rm -rf" not in dry_make("clean").replace("rm -rf outputs multirun", "")


def test_a_key_nothing_reads_is_one_line(tmp_path):
    line = one_line(cli(tmp_path, "++anything=1"))
    assert "anything is not a key this run reads" in line
    line = one_line(cli(tmp_path, "+method.lrr=0.1"))
    assert "method.lrr" in line and "did you mean lr" in line


def test_a_preset_without_multirun_says_it_runs_one_cell(tmp_path):
    done = cli(tmp_path, "experiment=salun_table", "seed=-1")  # fails on the seed right after the note
    assert "experiment=salun_table is a grid" in done.stderr and "ONE cell" in done.stderr
    assert "seed=-1" in one_line(done)


# --- 2. one line instead of a traceback -------------------------------------------------------------------
def test_pretrained_weights_without_network_are_one_line(tmp_path):
    start = time.time()
    line = one_line(cli(tmp_path, "model=timm", "model.arch=resnet10t", "model.pretrained=true",
                        env={"HF_HUB_OFFLINE": "1"}, tiny=TINY_CLI[:-1]))
    assert "model.pretrained=True" in line and time.time() - start < 60


def test_unwritable_output_dir_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = one_line(cli(tmp_path, f"paths.output_dir={blocker / 'out'}"))
    assert "paths.output_dir" in line


def call_main(monkeypatch, tmp_path, capsys, *overrides: str) -> tuple[int, str]:
    defaults = [*TINY_CLI, f"paths.cache_dir={tmp_path / 'cache'}", f"paths.records_dir={tmp_path / 'records'}",
                f"paths.output_dir={tmp_path / 'outputs'}"]
    monkeypatch.setattr(sys, "argv", ["unlearn-bench", *unless_given(defaults, overrides), *overrides])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "")  # records its state, so main()'s setdefault is undone after
    monkeypatch.delenv("HYDRA_FULL_ERROR")
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    try:
        with pytest.raises(SystemExit) as exit_info:
            runner.main()
    finally:  # leave no Hydra state behind for other tests
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None
    return exit_info.value.code, capsys.readouterr().err


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, tmp_path, capsys):
    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run", interrupted)
    code, err = call_main(monkeypatch, tmp_path, capsys)
    assert code == 130 and err.strip().count("\n") == 0 and err.startswith("error: interrupted")


def test_a_full_disk_is_one_line(monkeypatch, tmp_path, capsys):
    def full(path, record):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(runner.tracking, "write_record", full)
    code, err = call_main(monkeypatch, tmp_path, capsys, "method=ft")
    assert code == 1 and "No space left on device" in err and "Traceback" not in err


@pytest.mark.parametrize(("arrays", "expected"), [
    ({"y_train": np.full(60, 12)}, "labels in [12, 12]"),
    ({"x_train": np.zeros((60, 28, 27), np.uint8)}, "x_train has shape"),
    ({"y_train": np.zeros(59, np.int64)}, "y_train has shape (59,)"),
    ({"x_train": np.zeros((60, 28, 28), np.float32)}, "dtype float32"),
])
def test_a_data_file_with_wrong_arrays_is_one_line(make_cfg, tmp_path, arrays, expected):
    good = {"x_train": np.zeros((60, 28, 28), np.uint8), "y_train": np.arange(60) % 10,
            "x_test": np.zeros((20, 28, 28), np.uint8), "y_test": np.arange(20) % 10}
    np.savez(tmp_path / "mnist.npz", **{**good, **arrays})
    with pytest.raises(UserError) as err:
        run(make_cfg("dataset=mnist", "dataset.sha256=null", f"paths.data_root={tmp_path}"))
    assert expected in str(err.value) and "\n" not in str(err.value)


# --- 3. nothing lost ----------------------------------------------------------------------------------------
def test_wandb_is_logged_before_the_record_marks_the_cell_done(make_cfg, monkeypatch, tmp_path):
    def dies(cfg, record, output_dir):
        raise RuntimeError("process died while logging")

    monkeypatch.setattr(runner.tracking, "log_to_wandb", dies)
    with pytest.raises(RuntimeError):
        run(make_cfg("method=ft"))
    assert not list((tmp_path / "records").glob("*.json"))  # the rerun redoes (and logs) the cell


def test_two_runs_in_the_same_second_get_their_own_folders(workdirs):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=workdirs, return_hydra_config=True)
    assert str(cfg.hydra.run.dir).endswith(f"_{os.getpid()}")
    assert str(cfg.hydra.sweep.dir).endswith(f"_{os.getpid()}")


def test_missing_sample_grids_fail_loudly_and_write_nothing(tmp_path, capsys):
    from unlearn_bench.report import leaderboard

    config = {"dataset": {"name": "digits"}, "model": {"name": "ddpm_unet"}, "augmentation": {"name": "none"},
              "forget_rate": {"mode": "class", "class_id": 0}, "method": {"name": "esd"}, "seed": 0}
    record = {"config": config, "method": "esd", "task": "generation", "metrics": {"UA": 50.0},
              "retrain_metrics": {"UA": 90.0}, "original_metrics": {"UA": 1.0},
              "grids": {"method": str(tmp_path / "gone" / "samples.png")}}
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "esd.json").write_text(json.dumps(record))
    out = tmp_path / "board"
    assert leaderboard.main(["--task", "generation", "--records", str(tmp_path / "records"), "--out", str(out),
                             "--grids"]) == 2
    assert "sample grid" in capsys.readouterr().err and not out.exists()


def test_killing_a_joblib_sweep_stops_its_workers(tmp_path):
    marker = f"unlearn-bench-test-{os.getpid()}-{time.time()}"
    args = [sys.executable, "-m", "unlearn_bench.run", "-m", "hydra/launcher=joblib", "method=ft", "seed=0,1",
            *unless_given(TINY_CLI, ["train.epochs=400"]), "train.epochs=400", f"paths.cache_dir={tmp_path / 'cache'}",
            f"paths.records_dir={tmp_path / 'records'}", f"paths.output_dir={tmp_path / 'outputs'}"]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "UNLEARN_BENCH_TEST_MARKER": marker})

    def workers() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != proc.pid:
                try:
                    if marker.encode() in (entry / "environ").read_bytes():
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found

    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "cache").glob("*.lock")):
        time.sleep(0.5)  # the workers are training
    assert workers(), "the sweep started no workers"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while time.time() < deadline and workers():
        time.sleep(0.5)
    left = workers()
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "workers kept training after the sweep was killed"


# --- 4. a shared cache can read what one user wrote -------------------------------------------------------
def test_cache_entries_and_records_respect_the_umask(make_cfg, tmp_path):
    old = os.umask(0o022)
    try:
        run(make_cfg("method=ft"))
    finally:
        os.umask(old)
    files = [*(tmp_path / "cache").glob("*.pt"), *(tmp_path / "cache").glob("*.json"),
             *(tmp_path / "records").glob("*.json")]
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o644 for f in files)


# --- 5. W&B content -----------------------------------------------------------------------------------------
def test_wandb_run_holds_references_curves_device_and_switches(make_cfg, monkeypatch):
    import wandb

    logged, seen = [], {}

    steps = {}

    class FakeRun:
        summary = {}

        def log(self, values):
            logged.append(values)

        def define_metric(self, name, step_metric=None):
            steps[name] = step_metric

        def finish(self):
            pass

    def init(**kwargs):
        seen.update(kwargs)
        return FakeRun()

    monkeypatch.setattr(wandb, "init", init)
    run(make_cfg("method=ft", "logger=wandb", "forget_rate=class", "forget_rate.class_id=0"))
    keys = set().union(*logged)
    assert {"original/avg_gap", "retrain_floor/avg_gap", "regime/retrain_floor", "avg_gap"} <= keys
    assert not any(k.startswith("retrain2/") for k in keys)
    assert steps["original/train_loss"] == "original/epoch" and steps["retrain/train_loss"] == "retrain/epoch"
    assert "class_id0" in seen["group"] and "None" not in seen["group"] and seen["reinit"] == "finish_previous"
    assert "original/train_loss" in keys and sum("retrain/train_loss" in v for v in logged) == 4  # 4 epochs
    assert seen["config"]["device"] == "cpu" and "amp" in seen["config"]["perf"]


def test_leaderboard_wandb_table_is_offline_numeric_and_in_the_output_folder(tmp_path, monkeypatch):
    import wandb

    from unlearn_bench.report import leaderboard

    from .test_verdicts import write_record

    tables = {}

    class FakeRun:
        def log(self, values):
            tables.update(values)

        def finish(self):
            pass

    def init(**kwargs):
        tables["init"] = kwargs
        return FakeRun()

    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    write_record(tmp_path / "records", "ft", 0, 2.0)
    assert leaderboard.main(["--records", str(tmp_path / "records"), "--out", str(tmp_path / "b"), "--wandb"]) == 0
    assert tables["init"]["mode"] == "offline" and tables["init"]["dir"] == str(tmp_path / "b")
    frame = tables["leaderboard"].get_dataframe()
    assert frame["avg_gap_mean"].dtype.kind == "f" and frame["n"].dtype.kind in "iu"


# --- 7. help ------------------------------------------------------------------------------------------------
def test_help_describes_the_suite_and_lists_only_selectable_groups():
    out = subprocess.run([sys.executable, "-m", "unlearn_bench.run", "--help"], capture_output=True, text=True,
                         timeout=120).stdout
    assert "powered by Hydra" not in out and "closest to retraining" in out
    groups = out.split("== Config groups")[1].split("== Config (")[0]
    assert "shared" not in groups and "unlearn_sgd" not in groups
    conf = ROOT / "conf"
    for group in ("dataset", "model", "method", "augmentation", "forget_rate", "task", "attack", "scale",
                  "experiment", "hparams_search", "logger"):
        for option in sorted(p.relative_to(conf / group).with_suffix("").as_posix()
                             for p in (conf / group).rglob("*.yaml")):
            if group == "method" and option.startswith("tuned/"):  # generated: named by their pattern
                scale, track = option.split("/")[1:3]
                assert "tuned/<scale>/<track>/<method>" in groups and f"conf/method/tuned/{scale}/{track}/" in groups
                continue
            assert option in groups, f"{group}={option} is not in --help"


def test_wandb_groups_tell_every_forget_setting_apart():
    from unlearn_bench.tracking import forget_tag

    assert forget_tag({"mode": "class", "class_id": 0, "rate": None}) != forget_tag({"mode": "class", "class_id": 1})
    low = {"mode": "memorization", "stratum": "low", "count": 125, "score": "proxy"}
    assert forget_tag(low) != forget_tag({**low, "stratum": "high"})
    assert forget_tag({"mode": "random", "rate": 0.1}) == "random-rate0.1"


def test_a_wandb_log_that_was_not_written_fails_the_cell_before_its_record(make_cfg, monkeypatch, tmp_path):
    import types

    import wandb

    from unlearn_bench.errors import UserError

    class FakeRun:
        summary = {}
        settings = types.SimpleNamespace(sync_file=str(tmp_path / "wandb" / "offline-run-x" / "run-x.wandb"))

        def log(self, values):
            pass

        def define_metric(self, *args, **kwargs):
            pass

        def finish(self):
            pass  # like W&B on a full disk: no exception, no log

    monkeypatch.setattr(wandb, "init", lambda **kwargs: FakeRun())
    cfg = make_cfg("method=ft", "logger=wandb", "logger.mode=offline")
    with pytest.raises(UserError, match="W&B could not write the run's log .*run-x.wandb"):
        run(cfg)
    assert not list((tmp_path / "records").glob("*.json"))  # no record: the rerun redoes the cell


def test_an_added_hydra_key_the_launcher_never_reads_is_one_line():
    from unlearn_bench.run import unread_key

    line = unread_key(["prog", "+hydra.launcher.partition=gpu"])  # the basic launcher has no partition
    assert line.startswith("error: hydra.launcher.partition is not a key this run reads") and "\n" not in line
    assert unread_key(["prog", "hydra/launcher=joblib", "++hydra.launcher.n_jobs=2"]) is None
    assert unread_key(["prog", "+hydra.job.env_set.OMP_NUM_THREADS=1"]) is None  # a free-form mapping
    assert unread_key(["prog", "experiment=salun_table", "+hydra.sweeper.params.train.lr=0.1,0.01"]) is None


def test_a_key_given_twice_is_one_line_not_last_wins():
    from unlearn_bench.run import alias_overrides, repeated_key

    line = repeated_key(alias_overrides(["prog", "forget.class_id=3", "forget_rate.class_id=5"]))
    assert line.startswith("error: forget_rate.class_id is given twice") and "\n" not in line
    assert repeated_key(["prog", "seed=1", "seed=2"]) is not None
    assert repeated_key(["prog", "-m", "seed=1,2", "method=ft"]) is None
