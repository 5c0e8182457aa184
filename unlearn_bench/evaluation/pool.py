"""Evaluation against pools of models (docs/pools.md): one forget set, one original model, a pool of N retrain
models (training seeds 0..N−1 on D_r), a held-out retrain pool (N more, another stage seed) scored as if it
were a method, doing nothing (the original N times) and N seeded runs of the method from the original.

Each pool member is trained (or its logits loaded from the cache) in its own process, one per core, so a
pool uses the whole machine; only the logits on D_f, D_r, T (and the forgotten class's test images) are
kept, never N checkpoints unless `eval.keep_models`. Every method of a setting finds the retrain pools in
the cache. The scores (metrics/pool.py) compare, example by example, the method's pool with the retrain
pool; the record has the same shape as a cell's, so the leaderboard tabulates it (`--task pool`).
"""

from __future__ import annotations

import copy
import io
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from unlearn_bench import tracking
from unlearn_bench.cache import ModelCache, atomic_write_bytes, stable_hash
from unlearn_bench.context import MethodReport
from unlearn_bench.errors import UserError
from unlearn_bench.evaluation._common import EVALUATIONS
from unlearn_bench.methods import check_method
from unlearn_bench.metrics import Outputs, avg_gap, model_outputs
from unlearn_bench.metrics.core import metrics_of
from unlearn_bench.metrics.pool import (
    bucket_points,
    example_epsilons,
    final_score,
    klom,
    likelihood_ratio_attack,
    logit_scaled_confidence,
    margins,
)
from unlearn_bench.protocol import (
    Cell,
    data_digest,
    method_references,
    original_key_parts,
    prepare,
    reference_key_parts,
    reference_models,
    stop_with_parent,
    unlearn_once,
)
from unlearn_bench.tracking import summary_table, without_introduced

SETS = ("forget", "retain", "test", "forget_test")
# Pool roles: the stage whose model a member is, and the row it becomes.
STAGE_OF = {"retrain": "retrain", "held_out": "retrain2"}
ROWS = {"retrain": "retrain pool", "held_out": "held-out retrain pool", "original": "original (do nothing)"}


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pool_workers(cfg: DictConfig) -> int:
    """`eval.workers`: auto = one process per available core."""
    return available_cores() if cfg.eval.workers == "auto" else int(cfg.eval.workers)


_WORKER_CELLS: dict[str, tuple[Cell, ModelCache]] = {}


def worker_cell(cfg: DictConfig) -> tuple[Cell, ModelCache]:
    """The cell (data, splits, context) of this process, prepared once per process and config."""
    key = stable_hash(OmegaConf.to_container(cfg, resolve=True))
    if key not in _WORKER_CELLS:
        cache = ModelCache(Path(cfg.paths.cache_dir))
        _WORKER_CELLS[key] = prepare(cfg, cache.root), cache
    return _WORKER_CELLS[key]


def sets_key(cell: Cell) -> dict:
    """What the sets a member is evaluated on depend on besides its model."""
    cfg, splits = cell.cfg, cell.splits
    return {"forget_rate": OmegaConf.to_container(cfg.forget_rate, resolve=True),
            "forget_index": data_digest(splits.forget_index, splits.forget_index),
            "test": data_digest(splits.test.images, splits.test.labels),
            "eval_batch_size": cfg.metrics.eval_batch_size}


def save_logits(folder: Path, outputs: Outputs) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **{name: getattr(outputs, name).numpy() for name in SETS})
    atomic_write_bytes(folder / "logits.npz", buffer.getvalue())


def load_logits(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "logits.npz") as data:
        return {name: data[name] for name in SETS}


def member_key(cell: Cell, cache: ModelCache, role: str, index: int) -> dict:
    """What a pool member's logits depend on: its model (a retrain model's training seed; a method run's
    original, method settings and run index) and the sets it is evaluated on."""
    if role in STAGE_OF:
        stage = STAGE_OF[role]
        return {"model": cache.key(stage, reference_key_parts(cell, stage, index)), "sets": sets_key(cell)}
    cfg = cell.cfg
    method_cfg = without_introduced(OmegaConf.to_container(cfg.method, resolve=True))  # as in the cell id
    return {"original": cache.key("original", original_key_parts(cell, cache, cfg.seed)),
            "method": method_cfg, "run": index, "sets": sets_key(cell), "device": cell.ctx.device.type,
            "perf": cell.ctx.perf.as_dict(), "deterministic": cfg.deterministic}


def pool_member(config: dict, role: str, index: int, threads: int | None) -> dict:
    """One member of a pool: train (or load) it, keep its logits in the cache. Runs in a worker process;
    `config` is the resolved config as a plain dict (resolvers need not exist in the worker)."""
    stop_with_parent()  # a pool worker whose run was killed must not go on training members
    cfg = OmegaConf.create(config)
    if threads:
        torch.set_num_threads(threads)
    cell, cache = worker_cell(cfg)
    ctx, splits = cell.ctx, cell.splits
    keep = bool(cfg.eval.keep_models)
    key = member_key(cell, cache, role, index)
    if role in STAGE_OF:
        stage = STAGE_OF[role]

        def compute(folder: Path) -> dict:
            models, metas = reference_models(cell, cache, seed=index, stages=(stage,), keep=keep, announce=False)
            save_logits(folder, model_outputs(models[stage], splits, ctx))
            return {"seconds": metas[stage]["train_seconds"]}
    else:
        method_fn = check_method(cfg.method)

        def compute(folder: Path) -> dict:
            models, metas = reference_models(cell, cache, stages=("original",), announce=False)
            run_ctx = copy.copy(ctx)
            # run i: its own data order, labels, samples, and its own report
            run_ctx.references, run_ctx.report, run_ctx.seed = method_references(metas), MethodReport(), index
            run = unlearn_once(method_fn, models["original"], splits, cfg.method, run_ctx, index)
            save_logits(folder, model_outputs(run.model, splits, ctx))
            return {"seconds": run.seconds, "diverged": run.diverged}
    result, folder, hit = cache.get_or_compute(f"pool-{role}", key, compute)
    return {"role": role, "index": index, "hit": hit, **result, "logits": load_logits(folder)}


def cached_member(cell: Cell, cache: ModelCache, role: str, index: int) -> bool:
    """Whether a member's logits are already in the cache (a rerun submits only the others)."""
    return (cache.computed_folder(f"pool-{role}", member_key(cell, cache, role, index)) / "result.json").is_file()


def run_on_slurm(cfg: DictConfig, jobs: list[tuple[str, int]], config: dict, threads: int) -> list[dict]:
    """One SLURM job per member the cache lacks; the members come back through the cache. A job that is
    cancelled, times out or fails ends the run with one line once every other job has ended; the members
    that finished are kept, so the rerun submits only the missing ones. Separate jobs rather than an array: SLURM's accounting keeps no
    record of an array task cancelled while pending, and submitit would then wait for it forever."""
    import submitit
    from submitit.core.utils import FailedJobError, UncompletedJobError

    cell, cache = worker_cell(OmegaConf.create(config))
    todo = [job for job in jobs if not cached_member(cell, cache, *job)]
    results = [pool_member(config, role, index, threads) for role, index in jobs if (role, index) not in todo]
    if not todo:
        return results
    slurm = cfg.eval.slurm
    executor = submitit.AutoExecutor(folder=str(slurm.folder), cluster="slurm")
    parameters = {"name": f"pool-{cfg.method.name}", "timeout_min": int(slurm.timeout_min),
                  "cpus_per_task": int(slurm.cpus_per_task), "mem_gb": float(slurm.mem_gb),
                  "gpus_per_node": int(slurm.gpus_per_node)}
    if slurm.partition:
        parameters["slurm_partition"] = str(slurm.partition)
    if slurm.additional_parameters:
        parameters["slurm_additional_parameters"] = OmegaConf.to_container(slurm.additional_parameters)
    executor.update_parameters(**parameters)
    submitted = [executor.submit(pool_member, config, role, index, threads) for role, index in todo]
    print(f"pool: {len(todo)} of {len(jobs)} members submitted to SLURM (jobs {submitted[0].job_id}–"
          f"{submitted[-1].job_id}), {len(jobs) - len(todo)} in the cache", flush=True)
    failed = []  # every job is waited for, so that the rerun finds each finished member in the cache
    for job, (role, index) in zip(submitted, todo):
        try:
            results.append(job.result())
        except (UncompletedJobError, FailedJobError) as err:
            failed.append((role, index, job.job_id, (str(err).strip().splitlines() or [""])[0][:200]))
    if failed:
        role, index, job_id, first = failed[0]
        others = f" and {len(failed) - 1} other member(s)" if len(failed) > 1 else ""
        raise UserError(f"pool member {role} {index} (SLURM job {job_id}){others} did not complete ({first}); "
                        "the members that finished are in the cache and a rerun submits only the missing ones")
    return results


def run_members(cfg: DictConfig, jobs: list[tuple[str, int]]) -> list[dict]:
    """The members side by side: one process per worker (joblib's loky), inline when one worker, or one
    SLURM job each (eval.launcher=slurm)."""
    workers = min(pool_workers(cfg), len(jobs))
    config = OmegaConf.to_container(cfg, resolve=True)
    # Every member trains on the same number of threads (num_threads, else one), whatever the worker count:
    # a different thread count sums in another order, and the numbers must not depend on `eval.workers`.
    threads = cfg.num_threads or 1
    if cfg.eval.get("launcher", "local") == "slurm":
        return run_on_slurm(cfg, jobs, config, threads)
    if workers <= 1:
        before = torch.get_num_threads()
        try:
            return [pool_member(config, role, index, threads) for role, index in jobs]
        finally:
            torch.set_num_threads(before)
    from joblib import Parallel, delayed

    return Parallel(n_jobs=workers, backend="loky")(delayed(pool_member)(config, role, index, threads)
                                                   for role, index in jobs)


def per_model_metrics(logits: dict[str, np.ndarray], cell: Cell, seed: int) -> list[dict[str, float]]:
    """UA, RA, TA, MIA (the cell's metrics) of every model of a pool."""
    rows = []
    for k in range(len(logits["forget"])):
        out = Outputs(*(torch.from_numpy(logits[name][k]) for name in SETS))
        rows.append(metrics_of(out, cell.splits, cell.cfg.metrics, seed))
    return rows


def mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    return {name: float(np.mean([r[name] for r in rows])) for name in rows[0]}


def interval(values: np.ndarray) -> float:
    """Half-width of the normal 95 % interval of a mean over examples."""
    return float(1.96 * values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan


def pool_scores(pool: dict[str, np.ndarray], retrain: dict[str, np.ndarray], labels: dict[str, np.ndarray],
                retain_sample: np.ndarray, rates: str, top_edge: str, klom_direction: str) -> dict[str, float]:
    """Forgetting quality and final-score inputs, KLoM on D_f / a D_r sample / T, and the attack, of one pool
    against the retrain pool (arrays [N, n, C])."""
    conf_u = logit_scaled_confidence(pool["forget"], labels["forget"])
    conf_r = logit_scaled_confidence(retrain["forget"], labels["forget"])
    points = bucket_points(example_epsilons(conf_u, conf_r, rates=rates), len(conf_u))
    scores = {"forgetting_quality": float(points.mean()), "forgetting_quality_ci": interval(points),
              "example_points": points}
    for name, select in (("forget", slice(None)), ("retain", retain_sample), ("test", slice(None))):
        ours = margins(pool[name][:, select], labels[name][select])
        theirs = margins(retrain[name][:, select], labels[name][select])
        result = klom(ours, theirs, top_edge=top_edge, direction=klom_direction)
        scores[f"klom_{name}"], scores[f"klom_{name}_p95"] = result["mean"], result["p95"]
        if result["unscored"]:
            scores[f"klom_{name}_unscored"] = result["unscored"]
    attack = likelihood_ratio_attack(conf_u, conf_r)
    scores["lira_auc"], scores["lira_tpr_at_1fpr"] = attack["auc"], attack["tpr_at_fpr"]
    return scores


SCORE_COLUMNS = ["forgetting_quality", "final_score", "klom_forget", "klom_retain", "klom_test", "klom_forget_p95",
                 "lira_auc", "lira_tpr_at_1fpr"]


@EVALUATIONS.register("pool")
def run_pool(cfg: DictConfig, record_file: Path) -> dict:
    """The pool evaluation of one method on one forget set, its record and the printed rows."""
    start = time.perf_counter()
    check_method(cfg.method)  # a bad name or switch fails before any training
    cache = ModelCache(Path(cfg.paths.cache_dir))
    cell = prepare(cfg, cache.root)
    models, metas = reference_models(cell, cache, stages=("original",))  # once, before the workers need it
    n, workers = int(cfg.eval.pool_size), min(pool_workers(cfg), 3 * int(cfg.eval.pool_size))
    jobs = [(role, i) for i in range(n) for role in ("retrain", "held_out")] + [("method", i) for i in range(n)]
    print(f"pool: {n} retrain models, {n} held-out retrain models and {n} runs of {cfg.method.name} "
          f"({workers} worker{'s' if workers > 1 else ''})")
    members = run_members(cfg, jobs)
    by_role: dict[str, dict[str, np.ndarray]] = {}
    timing: dict[str, dict] = {}
    for role in ("retrain", "held_out", "method"):
        mine = sorted((m for m in members if m["role"] == role), key=lambda m: m["index"])
        by_role[role] = {name: np.stack([m["logits"][name] for m in mine]) for name in SETS}
        hits = sum(m["hit"] for m in mine)
        timing[role] = {"cache_hits": hits, "seconds": [m["seconds"] for m in mine],
                        "diverged": sum(bool(m.get("diverged")) for m in mine)}
        label = ROWS.get(role, f"{cfg.method.name} runs")
        print(f"{label}: {hits} of {n} from the cache{' (cache hit)' if hits == n else ''}, "
              f"{n - hits} trained")
    original = model_outputs(models["original"], cell.splits, cell.ctx)
    by_role["original"] = {name: np.repeat(getattr(original, name).numpy()[None], n, axis=0) for name in SETS}

    splits = cell.splits
    labels = {name: getattr(splits, name).labels.cpu().numpy() for name in SETS}
    generator = torch.Generator().manual_seed(int(cfg.seed))
    sample = torch.randperm(len(splits.retain), generator=generator)[:cfg.eval.retain_sample].sort().values.numpy()
    over = list(cfg.metrics.gap_over)
    retrain_rows = per_model_metrics(by_role["retrain"], cell, cfg.seed)
    retrain_means = mean_metrics(retrain_rows)
    results = {"retrain": {**retrain_means, "avg_gap": 0.0}}
    points: dict[str, list[float]] = {}  # per forget example, F's points (paired comparisons on one forget set)
    for role in ("method", "held_out", "original"):
        rows = per_model_metrics(by_role[role], cell, cfg.seed) if role != "original" else per_model_metrics(
            {name: v[:1] for name, v in by_role[role].items()}, cell, cfg.seed) * n
        means = mean_metrics(rows)
        scores = pool_scores(by_role[role], by_role["retrain"], labels, sample, cfg.eval.rates, cfg.eval.klom_top_edge,
                             cfg.eval.klom_direction)
        scores["final_score"] = final_score(scores["forgetting_quality"], means["RA"], retrain_means["RA"],
                                            means["TA"], retrain_means["TA"])
        gaps = [avg_gap(r, q, over) for r, q in zip(rows, retrain_rows)]
        points[role] = scores.pop("example_points").tolist()
        results[role] = {**means, **scores, "avg_gap": avg_gap(means, retrain_means, over),
                         "avg_gap_pairs": float(np.mean(gaps))}
    results["method"]["RTE"] = float(np.mean(timing["method"]["seconds"]))
    results["retrain"]["RTE"] = float(np.mean(timing["retrain"]["seconds"]))
    wall = time.perf_counter() - start

    record = tracking.save_record(cfg, record_file, {
        "task": "pool", "metrics": results["method"], "retrain_metrics": results["retrain"],
        "retrain2_metrics": results["held_out"], "original_metrics": results["original"],
        "diverged": timing["method"]["diverged"] > 0, "pool_size": n, "retain_sample": len(sample),
        "example_points": {"method": points["method"], "retrain2": points["held_out"],
                           "original": points["original"]},
        "forget_size": len(splits.forget), "retain_size": len(splits.retain), "test_size": len(splits.test),
        "pool": {"workers": workers, "wall_seconds": wall, **timing},
        "models": {"original": {"key": metas["original"]["key"],
                                "train_seconds": metas["original"]["train_seconds"]}}}, cell.ctx)

    rows = {cfg.method.name: results["method"], ROWS["held_out"]: results["held_out"],
            ROWS["original"]: results["original"]}
    print(summary_table(rows, [*SCORE_COLUMNS[:5], "lira_auc", "lira_tpr_at_1fpr", "UA", "RA", "TA", "avg_gap"]))
    print(f"forgetting quality (F, NeurIPS 2023 challenge; 1 = indistinguishable from retraining) of "
          f"{cfg.method.name}: {results['method']['forgetting_quality']:.3f} ± "
          f"{results['method']['forgetting_quality_ci']:.3f} (95 % over the {len(splits.forget)} forget examples); "
          f"held-out retrain pool {results['held_out']['forgetting_quality']:.3f}, doing nothing "
          f"{results['original']['forgetting_quality']:.3f}. Pool of {n}, {wall:.0f} s.")
    print(f"record: {record_file}")
    return record
