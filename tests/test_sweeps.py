"""Presets, multirun with the joblib launcher, resume after an interrupted sweep, leaderboard."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .conftest import SHARED_DATA, unless_given

ROOT = Path(__file__).resolve().parent.parent
TINY_CLI = ["logger=none", "progress=false", "train.epochs=3", "train.batch_size=64", "++method.epochs=1",
            "++model.widths=[8,16]"]


def cli(tmp_path: Path, *args: str, **kw) -> list[str]:
    defaults = [*TINY_CLI, f"paths.cache_dir={tmp_path / 'cache'}", f"paths.records_dir={tmp_path / 'records'}",
                f"paths.output_dir={tmp_path / 'outputs'}"]
    return [sys.executable, "-m", "unlearn_bench.run", *args, *unless_given(defaults, args)]


CLASSIFICATION_PRESETS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml") if p.stem != "generation")


def test_generation_preset_composes_a_diffusion_grid():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=generation"], return_hydra_config=True)
    grid = cfg.hydra.sweeper.params
    assert cfg.task.name == "generation" and cfg.model.name == "ddpm_unet" and cfg.attack.name == "dimra"
    assert len(str(grid.seed).split(",")) == 5 and str(grid.dataset) == "mnist,fashion_mnist"
    for method in str(grid.method).split(","):
        assert (ROOT / "conf" / "method" / f"{method}.yaml").is_file()
    assert cfg.generation.reference_seed == 0 and cfg.forget_rate.mode == "class"


@pytest.mark.parametrize("preset", CLASSIFICATION_PRESETS)
@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_every_preset_composes_at_both_scales(make_cfg, preset, scale):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={preset}", f"scale={scale}"], return_hydra_config=True)
    grid = cfg.hydra.sweeper.params
    assert "seed" in grid and len(str(grid.seed).split(",")) >= 5  # docs/statistics.md: at least 5 seeds
    for method in str(grid.get("method", "")).split(","):
        if method:
            assert (ROOT / "conf" / "method" / f"{method}.yaml").is_file()
    assert cfg.relearn.enabled
    if scale == "cpu":  # every cell of the grid passes the checks run before training
        from unlearn_bench.validate import validate

        methods = [m for m in str(grid.get("method", "")).split(",") if m] or [None]
        if not (SHARED_DATA / "fashion_mnist.npz").is_file():  # SCAR's surrogate file is checked too
            methods = [m for m in methods if m != "scar"]
        forgets = [f for f in str(grid.get("forget_rate", "")).split(",") if f] or [None]
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            for method in methods:
                for forget in forgets:
                    overrides = [f"experiment={preset}", f"paths.data_root={SHARED_DATA}",
                                 *([f"method={method}"] if method else []),
                                 *([f"forget_rate={forget}"] if forget else [])]
                    validate(compose("config", overrides=overrides))
    if scale == "paper":
        assert cfg.model.name == "resnet18" and cfg.train.epochs == 182 and cfg.train.batch_size == 256
        assert cfg.dataset.name == "cifar10" and cfg.dataset.train_size is None


def test_joblib_multirun_trains_each_model_once(tmp_path):
    methods, seeds = ["ft", "ga", "salun"], [0, 1]
    done = subprocess.run(cli(tmp_path, "-m", "hydra/launcher=joblib", f"method={','.join(methods)}",
                              f"seed={','.join(map(str, seeds))}"), cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    cells = len(seeds)  # a cell here = one (forget set, seed): methods share its three models
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 3 * cells  # original, retrain, retrain2
    assert len(list((tmp_path / "records").glob("*.json"))) == len(methods) * len(seeds)
    assert done.stdout.count(": trained (") == 3 * cells
    sweeps = list((tmp_path / "outputs" / "multiruns").iterdir())  # workers resolve the parent's folder
    assert len(sweeps) == 1 and len([p for p in sweeps[0].iterdir() if p.name.isdigit()]) == len(methods) * len(seeds)


def test_interrupted_multirun_resumes_without_redoing_finished_cells(tmp_path):
    args = cli(tmp_path, "-m", "method=ft,ga,rl,salun", "seed=0,1")
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    records = tmp_path / "records"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(records.glob("*.json"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.name: p.read_bytes() for p in records.glob("*.json")}
    assert 2 <= len(finished) < 8
    for payload in finished.values():
        json.loads(payload)  # every record that exists is complete
    again = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skip: cell") == len(finished)
    assert len(list(records.glob("*.json"))) == 8
    for name, payload in finished.items():
        assert (records / name).read_bytes() == payload  # finished cells were not redone


def test_leaderboard_writes_four_outputs_and_skips_corrupt_records(tmp_path):
    done = subprocess.run(cli(tmp_path, "-m", "method=ft,salun", "seed=0,1"), cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (tmp_path / "records" / "broken.json").write_text('{"config": ')
    (tmp_path / "records" / "partial.json").write_text('{"metrics": {}}')
    out = tmp_path / "board"
    board = subprocess.run([sys.executable, "-m", "unlearn_bench.report.leaderboard", "--records",
                            str(tmp_path / "records"), "--out", str(out), "--relative-to", "none"],
                           capture_output=True, text=True, timeout=300)
    assert board.returncode == 0, board.stderr
    assert "skipping" in board.stderr and "broken.json" in board.stderr and "partial.json" in board.stderr
    for suffix in ("md", "csv", "html", "png"):
        assert (out / f"leaderboard.{suffix}").stat().st_size > 0
    import pandas as pd

    table = pd.read_csv(out / "leaderboard.csv")
    assert set(table["method"]) == {"retrain", "retrain floor", "original", "ft", "salun"}
    assert (table["n"] == 2).all()
    assert table.loc[table["method"] == "retrain", "avg_gap_mean"].iloc[0] == 0.0
    assert (table.loc[table["method"] == "retrain", "rank"] == 0).all()


def test_leaderboard_help_documents_filters():
    out = subprocess.run([sys.executable, "-m", "unlearn_bench.report.leaderboard", "--help"],
                         capture_output=True, text=True, timeout=60).stdout
    for flag in ("--dataset", "--augmentation", "--forget", "--method", "--records", "--wandb"):
        assert flag in out


def test_wandb_sweep_file_drives_the_same_cli():
    sweep = yaml.safe_load((ROOT / "conf" / "wandb_sweep.yaml").read_text())
    assert sweep["metric"] == {"name": "avg_gap", "goal": "minimize"}
    assert "unlearn_bench.run" in sweep["command"]


@pytest.mark.slow
def test_optuna_search_minimises_avg_gap(tmp_path):
    done = subprocess.run(cli(tmp_path, "-m", "hparams_search=optuna", "method=ft", "hydra.sweeper.n_trials=3"),
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    best = next((tmp_path / "outputs" / "multiruns").rglob("optimization_results.yaml"))
    assert "best_value" in best.read_text()


def test_wandb_runs_of_a_multirun_carry_the_sweep_tag(workdirs):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from unlearn_bench.tracking import sweep_tag

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=workdirs, return_hydra_config=True)
    from omegaconf import read_write

    with read_write(cfg.hydra):
        cfg.hydra.sweep.dir = "outputs/multiruns/2026-01-01_10-00-00"
        cfg.hydra.mode = RunMode.RUN
    HydraConfig.instance().set_config(cfg)
    assert sweep_tag() is None
    with read_write(cfg.hydra):
        cfg.hydra.mode = RunMode.MULTIRUN
    HydraConfig.instance().set_config(cfg)
    assert sweep_tag() == "sweep:2026-01-01_10-00-00"
    HydraConfig.instance().cfg = None  # leave no Hydra state behind for other tests


def test_leaderboard_method_filter_keeps_commas_inside_variant_labels():
    from unlearn_bench.report import records

    assert records.parse_list("salun, manif_smc[blend,away],ft") == ["salun", "manif_smc[blend,away]", "ft"]
    assert records.parse_list("") is None


def test_the_augmentation_sweep_expands_to_the_multiruns_cells(workdirs):
    """conf/wandb_sweep_aug_study.yaml, expanded as W&B's grid does, gives exactly the cells of the offline
    `-m experiment=aug_study` multirun, and every run's overrides compose and validate (no W&B server)."""
    import itertools

    from hydra import compose, initialize_config_dir

    from unlearn_bench.tracking import cell_id
    from unlearn_bench.validate import validate

    sweep = yaml.safe_load((ROOT / "conf" / "wandb_sweep_aug_study.yaml").read_text())
    assert sweep["metric"] == {"name": "avg_gap", "goal": "minimize"} and sweep["method"] == "grid"
    command = sweep["command"]
    assert command[:4] == ["${env}", "${interpreter}", "-m", "unlearn_bench.run"] and command[-1] == "${args_no_hyphens}"
    fixed = [arg for arg in command[4:-1] if arg != "logger=wandb"]
    names = list(sweep["parameters"])
    runs = [[f"{k}={v}" for k, v in zip(names, values)]
            for values in itertools.product(*(sweep["parameters"][k]["values"] for k in names))]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        grid = compose("config", overrides=["experiment=aug_study"], return_hydra_config=True).hydra.sweeper.params
        multirun = {tuple(sorted(f"{k}={v}" for k, v in zip(grid, values)))
                    for values in itertools.product(*(str(grid[k]).split(",") for k in grid))}
        assert {tuple(sorted(run)) for run in runs} == multirun and len(runs) == 490
        # every run of one seed composes and validates (the other seeds differ from them in `seed` alone)
        ids = set()
        first_seed = [run for run in runs if "seed=0" in run]
        for run in first_seed:
            cfg = compose("config", overrides=[*fixed, *workdirs, "logger=none", *run])
            validate(cfg)
            assert cfg.dataset.train_size == 1000 and cfg.train.epochs == 300
            ids.add(cell_id(cfg))
    assert len(first_seed) == 98 and len(ids) == 98  # every run its own cell
    assert sweep["parameters"]["seed"]["values"] == [0, 1, 2, 3, 4]


def test_a_bad_job_stops_the_multirun_before_the_first_trains(tmp_path):
    """The last job's value is bad: one line names that job, exit 2, and no model was trained for the others."""
    done = subprocess.run(cli(tmp_path, "-m", "method=ft", "seed=0,1", "train.lr=0.1,0"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert "job #1" in lines[0] and "train.lr=0" in lines[0] and "seed=0" in lines[0] and "no job was started" in lines[0]
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.pt"))
    assert not (tmp_path / "records").exists() or not list((tmp_path / "records").iterdir())


def test_the_preset_grid_is_expanded_as_the_launcher_expands_it():
    from unlearn_bench.sweep_check import sweep_jobs

    jobs = sweep_jobs(["prog", "-m", "experiment=aug_study", "seed=0,1"], str(ROOT / "conf"))
    assert len(jobs) == 2 * 7 * 2 * 7 and jobs[0][:4] == ["seed=0", "method=retrain", "forget_rate=random_10",
                                                           "augmentation=none"]
    assert jobs[1][3] == "augmentation=default"  # the last key varies fastest
    assert sweep_jobs(["prog", "method=ft"], str(ROOT / "conf")) is None  # not a multirun
