"""The pool evaluation (docs/pools.md, `eval=pool`): its sanity rows, cache sharing, determinism across worker
counts and its checks, on tiny digits pools."""

from __future__ import annotations

import json

import pytest

from unlearn_bench import tracking
from unlearn_bench.errors import ConfigError
from unlearn_bench.run import run

POOL = ["eval=pool", "eval.pool_size=3", "eval.workers=1", "eval.retain_sample=50"]


def test_a_pool_record_has_every_score_and_its_sanity_rows(make_cfg, capsys):
    record = run(make_cfg(*POOL, "method=ft"))
    assert record["task"] == "pool" and record["pool_size"] == 3
    for row in ("metrics", "retrain2_metrics", "original_metrics"):
        for score in ("forgetting_quality", "final_score", "klom_forget", "klom_retain", "klom_test",
                      "klom_forget_p95", "lira_auc", "lira_tpr_at_1fpr", "avg_gap", "RA", "TA"):
            assert score in record[row], (row, score)
    # Doing nothing is deterministic: every forget example gets the cap, no points, score 0.
    assert record["original_metrics"]["forgetting_quality"] == 0.0
    assert record["original_metrics"]["final_score"] == 0.0
    # The held-out retrain pool comes from the retrain models' own distribution: it earns points.
    assert record["retrain2_metrics"]["forgetting_quality"] > 0.0
    assert record["retrain_metrics"]["avg_gap"] == 0.0
    out = capsys.readouterr().out
    assert "held-out retrain pool" in out and "original (do nothing)" in out and "forgetting quality" in out


def test_a_second_method_reuses_the_retrain_pools_and_keeps_no_checkpoints(make_cfg, tmp_path, capsys):
    run(make_cfg(*POOL, "method=ft"))
    capsys.readouterr()
    run(make_cfg(*POOL, "method=ga"))
    out = capsys.readouterr().out
    assert "retrain pool: 3 of 3 from the cache (cache hit)" in out
    assert "held-out retrain pool: 3 of 3 from the cache (cache hit)" in out
    assert "ga runs: 0 of 3 from the cache" in out
    checkpoints = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").glob("*.pt"))
    assert checkpoints == ["original"]  # the members' logits only, not N checkpoints


def test_the_retrain_pool_holds_the_cells_retrain_model(make_cfg, capsys):
    """Member `seed` of the retrain pool is the cell's retrain model (same training seed, same D_r)."""
    run(make_cfg(*POOL, "method=ft", "eval.keep_models=true"))
    capsys.readouterr()
    run(make_cfg("method=ft"))
    out = capsys.readouterr().out
    assert "retrain: cache hit" in out and "retrain2: cache hit" in out


def test_worker_count_and_kept_checkpoints_change_no_number(make_cfg, tmp_path):
    one = run(make_cfg(*POOL, "method=rl"))
    two = make_cfg(*POOL[:-2], "eval.retain_sample=50", "eval.workers=2", "eval.keep_models=true", "method=rl",
                   f"paths.cache_dir={tmp_path / 'cache2'}", f"paths.records_dir={tmp_path / 'records2'}")
    assert tracking.cell_id(two) == one["cell_id"]
    other = run(two)
    for row in ("metrics", "retrain2_metrics", "original_metrics", "retrain_metrics"):
        mine = {k: v for k, v in one[row].items() if k != "RTE"}
        theirs = {k: v for k, v in other[row].items() if k != "RTE"}
        assert json.dumps(mine, sort_keys=True) == json.dumps(theirs, sort_keys=True), row


def test_a_cell_keeps_its_identity(make_cfg):
    """eval=cell is the default and stays out of the cell id, so records made before pools still match."""
    assert "eval" not in tracking.cell_config(make_cfg("method=ft"))
    assert tracking.cell_config(make_cfg(*POOL, "method=ft"))["eval"] == {
        "name": "pool", "pool_size": 3, "retain_sample": 50, "rates": "grid", "klom_top_edge": "closed",
        "klom_direction": "retrain_first"}


@pytest.mark.parametrize("overrides, key", [
    (["eval.pool_size=2"], "eval.pool_size=2"),
    (["eval.workers=0"], "eval.workers=0"),
    (["eval.workers=many"], "eval.workers='many'"),
    (["eval.rates=exact"], "eval.rates='exact'"),
    (["eval.klom_top_edge=open"], "eval.klom_top_edge='open'"),
    (["eval.klom_direction=both"], "eval.klom_direction='both'"),
    (["eval.keep_models=1"], "eval.keep_models=1"),
    (["+eval.pool=4"], "eval.pool=4"),
    (["method=retrain"], "method='retrain'"),
    (["relearn.enabled=true"], "relearn.enabled=True"),
    (["task=generation"], "eval='pool'"),
])
def test_bad_pool_settings_are_one_line_before_any_training(make_cfg, tmp_path, overrides, key):
    with pytest.raises(ConfigError) as err:
        run(make_cfg(*POOL, *overrides))
    assert key in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.pt"))


def test_the_pool_leaderboard_keeps_pools_apart_and_shows_its_sanity_rows(make_cfg, tmp_path):

    import pandas as pd

    from unlearn_bench.report import leaderboard

    for method in ("ft", "ga"):
        run(make_cfg(*POOL, f"method={method}"))
    run(make_cfg("method=ft"))  # a single cell beside the pools
    records, out = str(tmp_path / "records"), tmp_path / "board"
    assert leaderboard.main(["--task", "pool", "--records", records, "--out", str(out)]) == 0
    table = pd.read_csv(out / "leaderboard.csv")
    assert list(table["method"])[:2] == ["retrain", "retrain floor"] and table["method"].iloc[-1] == "original"
    assert set(table["method"]) == {"retrain", "retrain floor", "ft", "ga", "original"}
    assert table.loc[table["method"] == "original", "final_score_mean"].item() == 0.0
    methods = table[table["method"].isin(["ft", "ga"])]
    assert methods["final_score_mean"].is_monotonic_decreasing  # best first
    assert methods["p_vs_best"].isna().all()  # one forget set: no best is named, so nothing is tested against it
    text = (out / "leaderboard.md").read_text()
    assert "held-out retrain pool" in text and "original (do nothing)" in text and "Pool size N = 3" in text
    assert "No best: 1 forget set(s), fewer than 3" in text and "Kendall τ" in text
    # the references are still tested, over the examples of the one forget set, and called optimistic
    assert "per-example final points" in text and "optimistic" in text
    # The classification table never takes a pool record, and the pool table never takes a cell record.
    assert leaderboard.main(["--records", records, "--out", str(tmp_path / "cells")]) == 0
    cells = pd.read_csv(tmp_path / "cells" / "leaderboard.csv")
    assert set(cells["method"]) == {"retrain", "retrain floor", "original", "ft"} and (cells["n"] == 1).all()


def test_the_bench_pool_figure_runs_the_pool_code(tmp_path, monkeypatch):
    from unlearn_bench.bench import pool as bench

    monkeypatch.setenv("UNLEARN_BENCH_CACHE", str(tmp_path / "cache"))
    figure = bench.pool_figure(2, ["dataset=digits", "train.epochs=2", "++model.widths=[8,16]"], str(tmp_path))
    assert figure["pool_size"] == 2 and figure["pool_wall_s"] > 0 and figure["one_model_one_thread_s"] > 0
    ideal = 2 * figure["one_model_one_thread_s"] / (figure["cores"] * figure["pool_wall_s"])
    assert abs(figure["pool_over_ideal"] - ideal) < 1e-9


def loky_children(parent: int) -> list[int]:
    """Process ids of the loky workers whose parent is `parent` (read from /proc, no tool needed)."""
    from pathlib import Path

    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().decode(errors="ignore")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and "LokyProcess" in command:
            found.append(int(entry.name))
    return found


def test_pool_workers_stop_when_their_run_is_killed(tmp_path):
    """A pool run killed while its members train leaves no worker behind (they would go on training and
    filling the cache). The watchdog starts with a worker's first member: a worker killed while it is still
    starting up is left to loky."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from .conftest import SHARED_DATA

    root = Path(__file__).resolve().parent.parent
    args = [sys.executable, "-m", "unlearn_bench.run", "eval=pool", "eval.pool_size=8", "eval.workers=2",
            "method=ft", "logger=none", "progress=false", "train.epochs=30", f"paths.cache_dir={tmp_path / 'cache'}",
            f"paths.records_dir={tmp_path / 'records'}", f"paths.output_dir={tmp_path / 'out'}",
            f"paths.data_root={SHARED_DATA}"]
    proc = subprocess.Popen(args, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:  # the members start right after this line
        if line.startswith("pool:"):
            break
    deadline = time.time() + 60
    workers: list[int] = []
    while time.time() < deadline and len(workers) < 2:
        workers = loky_children(proc.pid)
        time.sleep(0.2)
    assert workers, "no pool worker started"
    while time.time() < deadline and not list((tmp_path / "cache").glob("pool-*.lock")):
        time.sleep(0.2)  # the workers have taken their first members
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(Path(f"/proc/{p}").exists() for p in workers):
        time.sleep(0.5)
    alive = [p for p in workers if Path(f"/proc/{p}").exists()]
    for p in alive:
        os.kill(p, signal.SIGKILL)
    assert not alive, f"pool workers {alive} outlived their run"
