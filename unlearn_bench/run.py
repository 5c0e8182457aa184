"""The runner: one cell of the protocol (SPEC §1), from data to the Average Gap.

    python -m unlearn_bench.run method=salun dataset=mnist forget_rate=random_50 seed=1
    python -m unlearn_bench.run -m method=ft,rl,ga,salun seed=0,1,2
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from unlearn_bench import tracking
from unlearn_bench.cache import ModelCache, ensure_writable
from unlearn_bench.data import Splits, load_dataset, make_splits
from unlearn_bench.data.augment import build_augment
from unlearn_bench.errors import ConfigError, UserError, did_you_mean
from unlearn_bench.methods import check_method
from unlearn_bench.metrics import avg_gap, evaluate
from unlearn_bench.metrics.relearn import check_relearn, relearn_forget_accuracy
from unlearn_bench.models import build_model
from unlearn_bench.perf import prepare_model
from unlearn_bench.perf import resolve as resolve_perf
from unlearn_bench.train import Context, fit, seed_stage

log = logging.getLogger(__name__)
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
DEVICES = "auto, cpu, cuda, cuda:N"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError("device", name, DEVICES) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", name, "cpu or auto (no CUDA device is visible)")
    return device


def configure_torch(cfg: DictConfig) -> None:
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def data_digest(images, labels) -> str:
    """Fingerprint of a training set: a cache entry never outlives a change of the data under it."""
    digest = hashlib.sha256(images.cpu().numpy().tobytes())
    digest.update(labels.cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def summary_table(rows: dict[str, dict[str, float]], columns: list[str]) -> str:
    import pandas as pd

    frame = pd.DataFrame(rows).T.reindex(columns=columns)
    return frame.to_string(float_format=lambda v: f"{v:.2f}", na_rep="-")


@dataclass
class Cell:
    """Everything a cell's stages share: the splits on the device and the training context."""

    cfg: DictConfig
    splits: Splits
    ctx: Context
    channels: int

    def new_model(self, stage: str, seed: int | None = None) -> nn.Module:
        """A freshly initialised model, seeded per stage so cache hits leave later stages unchanged."""
        seed_stage(self.cfg.seed if seed is None else seed, f"{stage}-init")
        cfg = self.cfg
        model = build_model(cfg.model, self.channels, self.ctx.num_classes, cfg.dataset.image_size)
        return prepare_model(model.to(self.ctx.device), self.ctx.perf, self.ctx.device)


def prepare(cfg: DictConfig, cache_root: Path | None = None) -> Cell:
    """Load the data, select the forget set and build the context; validates the config on the way."""
    device = pick_device(cfg.device)
    configure_torch(cfg)
    dataset = load_dataset(cfg.dataset, Path(cfg.paths.data_root), cache_root)
    splits = make_splits(dataset, cfg.forget_rate, cfg.seed)
    augment = build_augment(cfg.augmentation, cfg.dataset.image_size, cfg.dataset.channels)
    channels = dataset.train.images.shape[1]
    mean, std = (torch.tensor(list(v), dtype=torch.float32) for v in (cfg.dataset.mean, cfg.dataset.std))
    if len(mean) != channels or len(std) != channels:
        raise ConfigError("dataset.mean/std", [list(cfg.dataset.mean), list(cfg.dataset.std)],
                          f"{channels} values each (one per channel)")
    ctx = Context(device=device, augment=augment, mean=mean.view(1, -1, 1, 1).to(device),
                  std=std.view(1, -1, 1, 1).to(device), num_classes=dataset.num_classes, seed=cfg.seed,
                  progress=bool(cfg.progress), eval_batch_size=cfg.metrics.eval_batch_size,
                  perf=resolve_perf(cfg.get("perf"), device))
    cell = Cell(cfg, splits.to(device, pin_memory=ctx.perf.pin_memory), ctx, channels)
    ctx.new_model = lambda: cell.new_model("fresh")
    return cell


def reference_models(cell: Cell, cache: ModelCache, fit_fn=None, key_extra: dict | None = None,
                     seed: int | None = None) -> tuple[dict[str, nn.Module], dict[str, dict]]:
    """The original model (trained on D) and the retrain model (on D_r), trained or loaded from the cache.
    `fit_fn(model, data, stage)` replaces the classifier recipe (diffusion models); `key_extra` joins the key;
    `seed` (default: the run seed) seeds their initialisation and training."""
    cfg, splits = cell.cfg, cell.splits
    seed = cfg.seed if seed is None else int(seed)
    fit_fn = fit_fn or (lambda model, data, stage: fit(model, data, cfg.train, cell.ctx, stage))
    common = {name: OmegaConf.to_container(cfg[name], resolve=True)
              for name in ("dataset", "model", "train", "augmentation")}
    common.update(key_extra or {})
    if cell.ctx.perf.any():  # weights trained with a speed switch differ in the last bits: their own entry
        common.update(perf=cell.ctx.perf.as_dict())
    common.update(seed=seed, device=cell.ctx.device.type,
                  train_data=data_digest(splits.train.images, splits.train.labels))
    stages = {"original": (splits.train, {}),
              "retrain": (splits.retain, {"forget_index": data_digest(splits.forget_index, splits.forget_index)})}
    models, metas = {}, {}
    for stage, (data, extra_key) in stages.items():
        def train(model: nn.Module, stage=stage, data=data) -> dict:
            seed_stage(seed, f"{stage}-train")
            return fit_fn(model, data, stage)

        models[stage], metas[stage], hit = cache.get_or_train(stage, {**common, **extra_key},
                                                              lambda stage=stage: cell.new_model(stage, seed), train)
        print(f"{stage}: {'cache hit' if hit else 'trained'} ({metas[stage]['key']}, "
              f"{metas[stage]['train_seconds']:.1f} s to train)")
    return models, metas


def run(cfg: DictConfig) -> dict:
    """Run one cell and return its record; a cell with a valid record is skipped unless force=true."""
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int):
        raise ConfigError("seed", cfg.seed, "an integer")
    records_dir = Path(cfg.paths.records_dir)
    record_file = tracking.record_path(records_dir, cfg)
    if not cfg.force and (existing := tracking.read_record(record_file)) is not None:
        print(f"skip: cell {existing['cell_id']} already has a record ({record_file}); force=true redoes it")
        return existing
    ensure_writable(records_dir, "paths.records_dir")
    method_task = cfg.method.get("task", "classification")
    if method_task != cfg.task.name:
        raise ConfigError("method", cfg.method.name, f"a method of task={cfg.task.name} "
                          f"(this one is for task={method_task}); see conf/method/*.yaml")
    if cfg.task.name == "generation":
        from unlearn_bench.generation.runner import run_generation

        return run_generation(cfg, record_file)
    method_fn = check_method(cfg.method)  # a bad name or switch fails before any training
    if cfg.relearn.enabled:
        check_relearn(cfg.relearn)
    cache = ModelCache(Path(cfg.paths.cache_dir))
    cell = prepare(cfg, cache.root)
    models, metas = reference_models(cell, cache)
    splits, ctx = cell.splits, cell.ctx

    ctx.extras["retrain"] = (models["retrain"], metas["retrain"])
    seed_stage(cfg.seed, "unlearn")
    unlearned, seconds = timed(method_fn, copy.deepcopy(models["original"]), splits, cfg.method, ctx)
    rte = seconds + ctx.extras.get("charged_seconds", 0.0)
    diverged = bool(ctx.extras.get("diverged")) or not all(
        torch.isfinite(p).all() for p in unlearned.parameters())
    if diverged:
        log.warning("method %s diverged (non-finite loss or weights); its metrics are recorded as they are",
                    cfg.method.name)

    def scores(model: nn.Module, attack: bool) -> dict[str, float]:
        metrics = evaluate(model, splits, ctx, cfg.metrics)
        if attack:
            metrics["relearn_FA"] = relearn_forget_accuracy(model, splits, cfg.relearn, ctx)
        return metrics

    results = {"method": scores(unlearned, cfg.relearn.enabled)}
    for stage in ("retrain", "original"):  # shared by every method of the cell: computed once, cached
        attack = cfg.relearn.enabled and stage == "retrain"
        key = {"model": metas[stage]["key"], "metrics": OmegaConf.to_container(cfg.metrics, resolve=True),
               "relearn": OmegaConf.to_container(cfg.relearn, resolve=True) if attack else None,
               "seed": cfg.seed, "forget_index": data_digest(splits.forget_index, splits.forget_index)}
        results[stage], _, _ = cache.get_or_compute(f"{stage}-eval", key, lambda _, m=models[stage], a=attack: scores(m, a))
    for metrics in results.values():
        metrics["avg_gap"] = avg_gap(metrics, results["retrain"], list(cfg.metrics.gap_over))
    results["method"]["RTE"] = rte
    results["retrain"]["RTE"] = metas["retrain"]["train_seconds"]

    record = {"cell_id": tracking.cell_id(cfg), "config": tracking.cell_config(cfg), "method": cfg.method.name,
              "metrics": results["method"], "retrain_metrics": results["retrain"],
              "original_metrics": results["original"], "diverged": diverged,
              "forget_size": len(splits.forget), "retain_size": len(splits.retain), "test_size": len(splits.test),
              "models": {stage: {"key": metas[stage]["key"], "train_seconds": metas[stage]["train_seconds"]}
                         for stage in metas},
              "git_commit": tracking.git_commit(), "packages": tracking.package_versions(),
              "device": str(ctx.device), "perf": ctx.perf.as_dict(), "finished": time.time()}
    tracking.write_record(record_file, record)
    tracking.log_to_wandb(cfg, record, Path(cfg.paths.output_dir))

    columns = [c for c in [*cfg.metrics.names, "avg_gap", "RTE", "relearn_FA"] if c in results["method"]]
    rows = {cfg.method.name: results["method"], "retrain": results["retrain"], "original": results["original"]}
    print(summary_table(rows, columns))
    print(f"record: {record_file}")
    return record


def alias_overrides(argv: list[str]) -> list[str]:
    """`forget.X=...` is accepted as a short alias of `forget_rate.X=...` (SPEC writes forget.class_id)."""
    return [("forget_rate." + a[len("forget."):]) if a.startswith("forget.") else a for a in argv]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    try:
        record = run(cfg)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    gap = record["metrics"].get("avg_gap", float("nan"))
    return gap if math.isfinite(gap) else float("inf")  # what an Optuna sweeper minimises


def unknown_group_choice(argv: list[str], config_dir: Path = Path(CONFIG_DIR)) -> str | None:
    """One-line error for `group=option` where conf/<group>/ has no such option (Hydra's own message
    lists its search path too); None when every choice exists. Launcher and sweeper groups, which
    plugins provide, and sweep expressions are left to Hydra."""
    import re

    for arg in argv[1:]:
        key, sep, value = arg.partition("=")
        group_dir = config_dir / key
        if not sep or key.startswith(("+", "~", "hydra")) or "." in key or not group_dir.is_dir():
            continue
        if re.search(r"[()\[\]${}]", value):
            continue
        options = sorted(str(p.relative_to(group_dir).with_suffix("")) for p in group_dir.rglob("*.yaml"))
        for choice in value.split(","):
            if choice not in (*options, "null"):
                return (f"error: {key}={choice!r} is not valid; accepted: {', '.join(options)}"
                        f"{did_you_mean(choice, options)}")
    return None


def hydra_error_line(err: Exception) -> str:
    """Hydra's composition errors span several lines; a key that does not exist gets the keys that do."""
    cause = err.__cause__
    full_key, parent = getattr(cause, "full_key", None), getattr(cause, "parent_node", None)
    if full_key and isinstance(parent, DictConfig) and "not in struct" in str(cause):
        keys = sorted(str(k) for k in parent.keys())
        where = full_key.rpartition(".")[0] or "the top level"
        return (f"error: {full_key} is not a key of this config; accepted under {where}: {', '.join(keys)}"
                f"{did_you_mean(str(cause.key), keys)}; ++{full_key}=... adds it")
    return "error: " + " ".join(line.strip() for line in str(err).splitlines() if line.strip())


def main() -> None:
    from hydra.errors import CompactHydraException

    sys.argv = alias_overrides(sys.argv)
    if message := unknown_group_choice(sys.argv):
        print(message, file=sys.stderr)
        sys.exit(2)
    users_choice = "HYDRA_FULL_ERROR" in os.environ
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # composition errors then reach us as exceptions
    try:
        _hydra_main()
    except CompactHydraException as err:  # bad overrides, missing keys: the user's input, one line
        if users_choice:
            raise
        print(hydra_error_line(err), file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    # Re-import under the package name: parallel launchers (joblib, submitit) pickle the task function,
    # which works by reference for `unlearn_bench.run` but would copy this `__main__` module by value.
    import unlearn_bench.run

    unlearn_bench.run.main()
