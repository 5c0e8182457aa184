"""End to end through the real command line."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    args = [sys.executable, "-m", "unlearn_bench.run", "progress=false", "train.epochs=4", "method.epochs=1",
            f"paths.cache_dir={tmp_path / 'cache'}", f"paths.records_dir={tmp_path / 'records'}",
            f"paths.output_dir={tmp_path / 'outputs'}", *overrides]
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_cli_runs_a_cell_logs_offline_to_wandb_and_writes_a_record(tmp_path):
    done = cli(tmp_path, "method=ft")
    assert done.returncode == 0, done.stderr[-2000:]
    for column in ("UA", "RA", "TA", "MIA", "avg_gap"):
        assert column in done.stdout
    assert list((tmp_path / "records").glob("ft-*.json"))
    assert list((tmp_path / "outputs" / "wandb").glob("offline-run-*"))
    again = cli(tmp_path, "method=salun", "logger=none")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "cache hit" in again.stdout


def test_cli_unknown_method_fails_in_a_few_lines(tmp_path):
    done = cli(tmp_path, "method=no_such_method")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: method='no_such_method' is not valid; accepted: ")
    assert "salun" in lines[0] and "ft" in lines[0]


def test_cli_bad_forget_rate_fails_in_one_line(tmp_path):
    done = cli(tmp_path, "forget_rate.rate=1.5", "logger=none")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == ["error: forget_rate.rate=1.5 is not valid; accepted: a finite number in (0, 1)"]


def test_cli_forget_alias(tmp_path):
    done = cli(tmp_path, "forget_rate=class", "forget.class_id=12", "logger=none")
    assert done.returncode == 2 and "forget_rate.class_id=12" in done.stderr
