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
import re
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
from unlearn_bench.validate import validate
from unlearn_bench.verdict import bar_misses, regime, verdict_line

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


def regime_line(values: dict) -> str:
    """The regime of one cell in one line (SPEC §8), with what it misses of the bar."""
    misses = bar_misses(values["original_forget_acc"], values["original_retain_acc"], values["original_gen_gap"],
                        values["gap_over_floor"])
    return (f"regime: original forget acc {values['original_forget_acc']:.1f}, retain acc "
            f"{values['original_retain_acc']:.1f}, TA {values['original_TA']:.1f} (generalisation gap "
            f"{values['original_gen_gap']:.1f}); original gap / retrain floor {values['gap_over_floor']:.1f} -> "
            + ("meets the bar" if not misses else "MISSES the bar: " + "; ".join(misses)))


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


REFERENCE_STAGES = ("original", "retrain", "retrain2")
TRAIN_KEYS = "train.lr, train.epochs, train.batch_size, train.weight_decay, train.scheduler"


def check_reference(stage: str, model: nn.Module, stats: dict, accuracy: float | None, majority: float | None) -> None:
    """A reference model that is not one (non-finite weights or loss, or no better than predicting the most
    frequent class of its own training data) is refused before it reaches the cache: every gap measured
    against it would be meaningless, and a broken retrain model would rank every method first."""
    problems = []
    if not all(torch.isfinite(p).all() for p in model.state_dict().values() if p.is_floating_point()):
        problems.append("non-finite weights")
    loss = stats.get("final_train_loss")
    if loss is not None and not math.isfinite(loss):
        problems.append(f"final training loss {loss}")
    if accuracy is not None and majority is not None and not accuracy > majority + CHANCE_MARGIN:
        problems.append(f"accuracy on its own training data {accuracy:.1f} % (chance: {majority:.1f} %)")
    if problems:
        raise UserError(f"the {stage} model is not usable ({'; '.join(problems)}); it was not cached. "
                        f"Check the training keys: {TRAIN_KEYS}")


CHANCE_MARGIN = 5.0  # points above the majority-class rate a reference model must reach on its training data


def reference_models(cell: Cell, cache: ModelCache, fit_fn=None, key_extra: dict | None = None,
                     seed: int | None = None, stages: tuple[str, ...] = REFERENCE_STAGES,
                     ) -> tuple[dict[str, nn.Module], dict[str, dict]]:
    """The original model (trained on D), the retrain model (on D_r) and a second retrain model on the same
    D_r with another training seed (initialisation and data order: the retrain floor of SPEC §8), trained or
    loaded from the cache. `fit_fn(model, data, stage)` replaces the classifier recipe (diffusion models);
    `key_extra` joins the key; `seed` (default: the run seed) seeds their initialisation and training;
    `stages` picks which of them a task needs."""
    cfg, splits = cell.cfg, cell.splits
    seed = cfg.seed if seed is None else int(seed)
    classifier = fit_fn is None
    fit_fn = fit_fn or (lambda model, data, stage: fit(model, data, cfg.train, cell.ctx, stage))
    common = {name: OmegaConf.to_container(cfg[name], resolve=True)
              for name in ("dataset", "model", "train", "augmentation")}
    common.update(key_extra or {})
    if cell.ctx.perf.any():  # weights trained with a speed switch differ in the last bits: their own entry
        common.update(perf=cell.ctx.perf.as_dict())
    common.update(seed=seed, device=cell.ctx.device.type,
                  train_data=data_digest(splits.train.images, splits.train.labels))
    forget_key = {"forget_index": data_digest(splits.forget_index, splits.forget_index)}
    available = {"original": (splits.train, {}), "retrain": (splits.retain, forget_key),
                 "retrain2": (splits.retain, forget_key)}
    models, metas = {}, {}
    for stage in stages:
        data, extra_key = available[stage]

        def train(model: nn.Module, stage=stage, data=data) -> dict:
            seed_stage(seed, f"{stage}-train")  # retrain2: its own stage name, so its own init and data order
            stats = fit_fn(model, data, stage)
            accuracy = majority = None
            if classifier:
                from unlearn_bench.metrics.core import accuracy as percent_correct
                from unlearn_bench.metrics.core import logits_on

                accuracy = percent_correct(logits_on(model, data, cell.ctx), data.labels)
                majority = 100.0 * torch.bincount(data.labels.cpu()).max().item() / max(len(data), 1)
                stats = {**stats, "train_accuracy": accuracy}
            check_reference(stage, model, stats, accuracy, majority)
            return stats

        models[stage], metas[stage], hit = cache.get_or_train(stage, {**common, **extra_key},
                                                              lambda stage=stage: cell.new_model(stage, seed), train)
        print(f"{stage}: {'cache hit' if hit else 'trained'} ({metas[stage]['key']}, "
              f"{metas[stage]['train_seconds']:.1f} s to train)")
    return models, metas


def stop_with_parent(poll_seconds: float = 1.0) -> None:
    """In a joblib (loky) worker, exit once the sweep's parent process is gone: a killed sweep must not
    leave workers training and writing records behind it. Records and cache entries are written
    atomically, so stopping anywhere loses only the cell in progress."""
    import multiprocessing
    import threading

    if not multiprocessing.current_process().name.startswith("LokyProcess") or getattr(stop_with_parent, "on", False):
        return
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(143)

    threading.Thread(target=watch, name="stop-with-parent", daemon=True).start()
    stop_with_parent.on = True


def run(cfg: DictConfig) -> dict:
    """Run one cell and return its record; a cell with a valid record is skipped unless force=true."""
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int):
        raise ConfigError("seed", cfg.seed, "an integer")
    stop_with_parent()
    validate(cfg)  # every value, before a finished cell is skipped and before any work
    pick_device(cfg.device)
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
    for stage in ("retrain", "retrain2", "original"):  # shared by every method of the cell: computed once, cached
        attack = cfg.relearn.enabled and stage == "retrain"
        key = {"model": metas[stage]["key"], "metrics": OmegaConf.to_container(cfg.metrics, resolve=True),
               "relearn": OmegaConf.to_container(cfg.relearn, resolve=True) if attack else None,
               "seed": cfg.seed, "forget_index": data_digest(splits.forget_index, splits.forget_index)}
        results[stage], _, _ = cache.get_or_compute(f"{stage}-eval", key, lambda _, m=models[stage], a=attack: scores(m, a))
    for metrics in results.values():
        metrics["avg_gap"] = avg_gap(metrics, results["retrain"], list(cfg.metrics.gap_over))
    results["method"]["RTE"] = rte
    results["retrain"]["RTE"] = metas["retrain"]["train_seconds"]
    results["retrain2"]["RTE"] = metas["retrain2"]["train_seconds"]
    floor = results["retrain2"]["avg_gap"]  # the gap between two retrains: the noise of retraining itself
    cell_regime = regime(results["original"], results["retrain"], floor)

    record = {"cell_id": tracking.cell_id(cfg), "config": tracking.cell_config(cfg), "method": cfg.method.name,
              "metrics": results["method"], "retrain_metrics": results["retrain"],
              "original_metrics": results["original"], "retrain2_metrics": results["retrain2"],
              "regime": cell_regime, "diverged": diverged,
              "forget_size": len(splits.forget), "retain_size": len(splits.retain), "test_size": len(splits.test),
              "models": {stage: {"key": metas[stage]["key"], "train_seconds": metas[stage]["train_seconds"],
                                 "loss_curve": metas[stage].get("loss_curve")} for stage in metas},
              "git_commit": tracking.git_commit(), "packages": tracking.package_versions(),
              "device": str(ctx.device), "perf": ctx.perf.as_dict(), "finished": time.time()}
    # W&B first: a process that dies between the two leaves no record, so the rerun logs the cell again
    # instead of skipping a cell whose run was never logged.
    tracking.log_to_wandb(cfg, record, Path(cfg.paths.output_dir))
    tracking.write_record(record_file, record)

    columns = [c for c in [*cfg.metrics.names, "avg_gap", "RTE", "relearn_FA"] if c in results["method"]]
    rows = {cfg.method.name: results["method"], "retrain": results["retrain"],
            "retrain floor": results["retrain2"], "original": results["original"]}
    print(summary_table(rows, columns))
    print(regime_line(cell_regime))
    print(verdict_line(cfg.method.name, results["method"]["avg_gap"], floor, results["original"]["avg_gap"]))
    print(f"record: {record_file}")
    return record


def alias_overrides(argv: list[str]) -> list[str]:
    """`forget.X=...` is accepted as a short alias of `forget_rate.X=...` (SPEC writes forget.class_id)."""
    return [("forget_rate." + a[len("forget."):]) if a.startswith("forget.") else a for a in argv]


def single_cell_of_a_grid(cfg: DictConfig) -> str | None:
    """`experiment=X` without -m runs one cell of X's grid: say so, with the cell, instead of silently."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    grid = hydra_cfg.sweeper.get("params") or {}
    experiment = hydra_cfg.runtime.choices.get("experiment")
    if hydra_cfg.mode == RunMode.MULTIRUN or not grid or not experiment:
        return None
    size = math.prod(len(str(values).split(",")) for values in grid.values())
    choices = hydra_cfg.runtime.choices
    chosen = ", ".join(f"{k}={choices[k] if k in choices else OmegaConf.select(cfg, k)}" for k in grid)
    return (f"note: experiment={experiment} is a grid of about {size} cells (run it with -m); without -m this "
            f"runs ONE cell of it: {chosen}")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    if note := single_cell_of_a_grid(cfg):
        print(note, file=sys.stderr)
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


def first_sweep_value(arg: str) -> str | None:
    """`key=a,b` -> `key=a` (commas inside brackets belong to a value); None for a sweep function."""
    key, sep, value = arg.partition("=")
    if re.match(r"^\s*(range|choice|interval|glob|tag|sort|shuffle)\(", value):
        return None
    depth, out = 0, ""
    for char in value:
        depth += {"[": 1, "(": 1, "{": 1, "]": -1, ")": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            break
        out += char
    return f"{key}{sep}{out}"


def unread_key(argv: list[str], config_dir: str = CONFIG_DIR) -> str | None:
    """One-line error for `+key=…` / `++key=…` that adds a key no part of the run reads: it would change
    the cell id (a duplicate record) while changing nothing else. None when every added key exists."""
    added = [a for a in argv[1:] if a.startswith("+") and not a.lstrip("+").startswith("hydra")]
    if not added:
        return None
    from hydra import compose, initialize_config_dir

    others = [v for a in argv[1:] if not a.startswith(("+", "-", "~", "hydra")) and "=" in a
              for v in [first_sweep_value(a)] if v]
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            base = compose("config", overrides=others)
    except Exception:  # the run itself reports what is wrong with the other overrides
        return None
    missing = object()
    for arg in added:
        key = arg.lstrip("+").partition("=")[0]
        if OmegaConf.select(base, key, default=missing) is missing:
            parent = key.rpartition(".")[0]
            node = OmegaConf.select(base, parent) if parent else base
            keys = sorted(str(k) for k in node.keys()) if isinstance(node, DictConfig) else []
            where = f"accepted under {parent or 'the top level'}: {', '.join(keys)}" if keys else \
                f"{parent} is not a config node"
            return (f"error: {key} is not a key this run reads (`{arg.partition('=')[0]}=` would add it to the "
                    f"cell id and change nothing else); {where}{did_you_mean(key.rpartition('.')[2], keys)}")
    return None


def main() -> None:
    import errno

    from hydra.errors import CompactHydraException

    sys.argv = alias_overrides(sys.argv)
    if message := unknown_group_choice(sys.argv) or unread_key(sys.argv):
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
    except KeyboardInterrupt:
        print("error: interrupted; finished records and cache entries are kept and a rerun resumes from them",
              file=sys.stderr)
        sys.exit(130)
    except OSError as err:  # a folder Hydra or the run cannot write, a full disk
        if users_choice or err.errno not in (errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT, errno.EPERM,
                                                          errno.ENOTDIR, errno.EEXIST):
            raise
        print(f"error: {err.strerror}: {err.filename or ''} (check paths.output_dir, paths.cache_dir, "
              f"paths.records_dir and the free space there)", file=sys.stderr)
        sys.exit(2 if err.errno != errno.ENOSPC else 1)
    except Exception as err:  # a launcher's job that was cancelled, timed out or failed (submitit)
        if users_choice or type(err).__name__ != "UncompletedJobError":
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"error: a job of the multirun did not complete (cancelled, timed out or failed: {first[:300]}); "
              "the finished cells have their records and a rerun skips them", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    # Re-import under the package name: parallel launchers (joblib, submitit) pickle the task function,
    # which works by reference for `unlearn_bench.run` but would copy this `__main__` module by value.
    import unlearn_bench.run

    unlearn_bench.run.main()
