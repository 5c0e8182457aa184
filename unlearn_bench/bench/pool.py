"""(e) A pool's wall time against N × one model's: the retrain models of `eval=pool` trained through the
runner's own pool code from an empty cache.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time

from unlearn_bench.bench.throughput import machine
from unlearn_bench.config import CONFIG_DIR

POOL_SETTING = ["scale=cpu", "dataset.train_size=1000", "method=ft"]  # the setting of results/pool


def pool_figure(n: int, overrides: list[str], data_root: str) -> dict:
    """(e) A pool's wall time against N × one model's: the retrain models of `eval=pool`, trained through
    the runner's own pool code from an empty cache, (1) one model in this process on one thread, (2) one
    model on all cores' threads, (3) N models with one worker process per core. Ideal: (3) trains N
    models in N × (1) / cores."""
    import tempfile

    from hydra import compose, initialize_config_dir

    from unlearn_bench.evaluation.pool import available_cores, run_members

    cores = available_cores()

    def seconds(extra: list[str], jobs: list[tuple[str, int]], tmp: str, tag: str) -> float:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[*overrides, "eval=pool", f"eval.pool_size={max(n, 3)}", "logger=none",
                                               "progress=false", f"paths.data_root={data_root}",
                                               f"paths.cache_dir={tmp}/{tag}", *extra])
        start = time.perf_counter()
        run_members(cfg, jobs)
        return time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        one = seconds(["eval.workers=1"], [("retrain", 0)], tmp, "one")
        one_all = seconds(["eval.workers=1", f"num_threads={cores}"], [("retrain", 0)], tmp, "all")
        pool = seconds([f"eval.workers={cores}"], [("retrain", i) for i in range(n)], tmp, "pool")
    return {"pool_size": n, "cores": cores, "overrides": overrides, "one_model_one_thread_s": one,
            f"one_model_{cores}_threads_s": one_all, "pool_wall_s": pool,
            "pool_over_ideal": n * one / (cores * pool),  # 1.0 = N models in N × (1) / cores
            "pool_over_best_single_process": n * min(one, one_all) / pool}  # speed-up over one process


def pool_main(args: argparse.Namespace, argv: list[str]) -> int:
    """Measure (e) and write <out>/pool.{md,json}."""
    result = {"machine": machine(), **pool_figure(args.pool, POOL_SETTING, args.data_root),
              "command": shlex.join(["unlearn-bench-bench", *argv])}
    cores = result["cores"]
    lines = ["# (e) Training a pool of models: wall time against N × one model", "",
             f"Command: `{result['command']}`", "", f"Machine: {result['machine']}", "",
             f"Setting: `{' '.join(POOL_SETTING)}` (the retrain models of `eval=pool`), from an empty cache.", "",
             "| measurement | seconds |", "|---|---|",
             f"| (1) one model, one process, one thread | {result['one_model_one_thread_s']:.1f} |",
             f"| (2) one model, one process, {cores} threads | {result[f'one_model_{cores}_threads_s']:.1f} |",
             f"| (3) a pool of {args.pool} models, {cores} worker processes of one thread | {result['pool_wall_s']:.1f} |",
             "",
             f"Pool throughput over the ideal ({args.pool} × (1) / {cores} cores): **{result['pool_over_ideal']:.2f}** "
             f"(target ≥ 0.9); speed-up over the best single process (one model at a time, the faster of (1) "
             f"and (2)): {result['pool_over_best_single_process']:.2f}×.", ""]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pool.json").write_text(json.dumps(result, indent=2))
    (args.out / "pool.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0

