"""Result records (one JSON per cell, written atomically) and the W&B run of a cell."""

from __future__ import annotations

import json
import logging
import subprocess
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from unlearn_bench.cache import atomic_write_json, machine, stable_hash
from unlearn_bench.config import is_method_config
from unlearn_bench.errors import UserError

log = logging.getLogger(__name__)

RECORD_VERSION = 1
# Keys that do not change what a cell computes: excluded from its identity.
NON_SEMANTIC_KEYS = ("paths", "logger", "force", "progress", "device", "num_threads", "perf", "hydra", "checkpoint")
POOL_RUNTIME_KEYS = ("workers", "keep_models", "launcher", "slurm")
PACKAGES = ("torch", "torchvision", "timm", "hydra-core", "scikit-learn", "numpy", "wandb", "pandas")


def without_introduced(method: dict) -> dict:
    """A method config without its tuning space (`search`: how to tune it, not what runs) and without the
    switches its YAML lists under `introduced` while they hold the value every earlier record ran with, so
    adding a switch keeps the ids (and records) of the cells it does not change. Nested method configs
    (RUM's strata) are treated alike."""
    introduced = method.get("introduced") or {}
    return {k: without_introduced(v) if is_method_config(v) else v
            for k, v in method.items()
            if k not in ("search", "introduced") and not (k in introduced and v == introduced[k])}


def cell_config(cfg: DictConfig) -> dict:
    """What a cell computes: the config without the keys that do not change it (NON_SEMANTIC_KEYS, the
    method's `search` and its `introduced` switches at their earlier value)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    if isinstance(container.get("method"), dict):
        container["method"] = without_introduced(container["method"])
    metrics = container.get("metrics")
    if isinstance(metrics, dict) and metrics.get("latent_probe", 0) is None:  # off: ids as before it existed
        metrics.pop("latent_probe")
    generation = container.get("generation")
    if isinstance(generation, dict) and generation.get("floor") is False:  # off: ids as before it existed
        generation.pop("floor")
    evaluation = container.get("eval")
    if isinstance(evaluation, dict):
        if evaluation.get("name") == "cell":  # the single cell: ids as before pools existed
            container.pop("eval")
        else:  # how many processes train a pool, and whether checkpoints are kept, change no number
            for key in POOL_RUNTIME_KEYS:
                evaluation.pop(key, None)
    return {k: v for k, v in container.items() if k not in NON_SEMANTIC_KEYS}


def cell_id(cfg: DictConfig) -> str:
    return stable_hash(cell_config(cfg))


def record_path(records_dir: Path, cfg: DictConfig) -> Path:
    return records_dir / f"{cfg.method.name}-{cell_id(cfg)}.json"


def read_record(path: Path) -> dict | None:
    """A finished cell's record, or None when absent or unreadable (a partial record is never trusted)."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        if record.get("record_version") != RECORD_VERSION or "metrics" not in record:
            raise ValueError("not a complete record")
        return record
    except (ValueError, OSError) as err:
        log.warning("record %s is unreadable (%s); the cell will be rerun", path, err)
        return None


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_record(path: Path, record: dict) -> None:
    atomic_write_json(path, {"record_version": RECORD_VERSION, **record})


def save_record(cfg: DictConfig, record_file: Path, body: dict, ctx, wandb_extra: dict | None = None) -> dict:
    """The one record writer of every evaluation mode: the cell's identity, `body`, and one provenance schema
    (commit, package versions, device, timings, when it finished). W&B first: a process that dies between the
    two leaves no record, so the rerun logs the cell again instead of skipping a cell whose run was never
    logged. `wandb_extra` adds keys to the logged copy only."""
    import time

    record = {"cell_id": cell_id(cfg), "config": cell_config(cfg), "method": cfg.method.name, **body,
              "git_commit": git_commit(), "packages": package_versions(), "device": str(ctx.device),
              "machine": machine(ctx.device), "perf": ctx.perf.as_dict(), "finished": time.time()}
    log_to_wandb(cfg, {**record, **(wandb_extra or {})}, Path(cfg.paths.output_dir))
    write_record(record_file, record)
    return record


def sweep_tag() -> str | None:
    """`sweep:<multirun folder>` inside a Hydra multirun, so one sweep's runs can be told from another's
    in a shared group; None outside one."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return f"sweep:{Path(HydraConfig.get().sweep.dir).name}"


def forget_tag(forget: dict) -> str:
    """The forget setting in a W&B group name: its mode and every key it sets, so class 0 and class 1, or the
    low and high memorisation strata, never share a group (a 0 is a value, not a missing one)."""
    keys = sorted(k for k, v in forget.items() if k != "mode" and v is not None)
    return "-".join([str(forget.get("mode"))] + [f"{k}{forget[k]}" for k in keys])


# The record's names for the reference rows, as every table calls them.
WANDB_PARTS = {"retrain": "retrain", "retrain2": "retrain_floor", "original": "original"}


def log_to_wandb(cfg: DictConfig, record: dict, output_dir: Path) -> None:
    """One W&B run per cell, grouped by everything but method and seed so the UI compares them."""
    if cfg.logger.name == "none":
        return
    import wandb

    forget = OmegaConf.to_container(cfg.forget_rate, resolve=True)
    group = cfg.logger.group or (f"{cfg.dataset.name}-{cfg.model.name}-{forget_tag(forget)}-{cfg.augmentation.name}"
                                 + (f"-pool{cfg.eval.pool_size}" if record.get("task") == "pool" else ""))
    output_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=cfg.logger.project, entity=cfg.logger.entity, mode=cfg.logger.mode,
                     group=group, job_type=cfg.method.name,
                     tags=[*cfg.logger.tags, *filter(None, [sweep_tag()])],
                     name=f"{cfg.method.name}-seed{cfg.seed}", dir=str(output_dir),
                     config={**record["config"], "device": record.get("device"), "perf": record.get("perf")},
                     reinit="finish_previous")
    try:
        for stage, model in (record.get("models") or {}).items():  # the reference models' training curves
            stage = WANDB_PARTS.get(stage, stage)
            run.define_metric(f"{stage}/epoch")  # each stage's curve on its own epoch axis
            run.define_metric(f"{stage}/train_loss", step_metric=f"{stage}/epoch")
            for epoch, loss in enumerate(model.get("loss_curve") or []):
                run.log({f"{stage}/train_loss": loss, f"{stage}/epoch": epoch + 1})
        summary = {**record["metrics"], "cell_id": record["cell_id"], "diverged": record["diverged"]}
        for part, name in WANDB_PARTS.items():  # the references and doing nothing, beside the method
            summary.update({f"{name}/{k}": v for k, v in (record.get(f"{part}_metrics") or {}).items()})
        summary.update({f"regime/{k}": v for k, v in (record.get("regime") or {}).items()})
        run.log(summary)
        run.summary.update(summary)
    finally:
        run.finish()
    check_offline_log(run, cfg.logger.mode)


def check_offline_log(run, mode: str) -> None:
    """W&B does not raise when it cannot write its log (a full disk): an offline run whose transaction log
    is missing or empty fails the cell here, before its record is written, so the rerun logs it again."""
    sync_file = getattr(getattr(run, "settings", None), "sync_file", None)
    if mode != "offline" or not sync_file:
        return
    path = Path(sync_file)
    if not path.is_file() or path.stat().st_size == 0:
        raise UserError(f"W&B could not write the run's log {path} (a full disk or an unwritable "
                        "paths.output_dir?); the cell has no record, and a rerun logs it again")


def summary_table(rows: dict[str, dict[str, float]], columns: list[str]) -> str:
    import pandas as pd

    frame = pd.DataFrame(rows).T.reindex(columns=columns)
    return frame.to_string(float_format=lambda v: f"{v:.2f}", na_rep="-")
