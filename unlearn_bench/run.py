"""The entry point: one cell of the protocol (docs/protocol.md) per run, or a grid with -m. It validates the config,
skips a finished cell, dispatches to the task (classification, generation) and turns user errors into one
line; the protocol (data, splits, reference models) lies below the tasks in unlearn_bench.protocol.

    python -m unlearn_bench.run method=salun dataset=mnist forget_rate=random_50 seed=1
    python -m unlearn_bench.run -m method=ft,rl,ga,salun seed=0,1,2
"""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from unlearn_bench import config, tracking
from unlearn_bench.cache import ensure_writable
from unlearn_bench.errors import UserError, did_you_mean
from unlearn_bench.protocol import pick_device, stop_with_parent
from unlearn_bench.sweep_check import check_multirun, first_sweep_value
from unlearn_bench.validate import check_overrides, validate

CONFIG_DIR = str(config.CONFIG_DIR)


def run(cfg: DictConfig) -> dict:
    """Run one cell and return its record; a cell with a valid record is skipped unless force=true."""
    stop_with_parent()
    validate(cfg)  # every value, before a finished cell is skipped and before any work
    pick_device(cfg.device)
    records_dir = Path(cfg.paths.records_dir)
    record_file = tracking.record_path(records_dir, cfg)
    if not cfg.force and (existing := tracking.read_record(record_file)) is not None:
        print(f"skip: cell {existing['cell_id']} already has a record ({record_file}); force=true redoes it")
        if existing.get("task", "classification") == "classification" and existing.get("regime"):
            from unlearn_bench.evaluation.cell import print_cell

            print_cell(existing, list(cfg.metrics.names), record_file)
        return existing
    ensure_writable(records_dir, "paths.records_dir")
    from unlearn_bench.evaluation import EVALUATIONS, evaluation_mode

    return EVALUATIONS.get(evaluation_mode(cfg))(cfg, record_file)


def repeated_key(argv: list[str]) -> str | None:
    """One line for a key given twice on the command line (an alias and its full key, or the same key twice):
    Hydra would keep the last value silently."""
    seen: dict[str, str] = {}
    for arg in argv[1:]:
        if arg.startswith("-") or "=" not in arg:
            continue
        key = arg.lstrip("+~").partition("=")[0]
        if key in seen and seen[key] != arg:
            return (f"error: {key} is given twice ({seen[key]} and {arg}); accepted: one value per key "
                    "(a sweep takes its values comma-separated in one override)")
        seen[key] = arg
    return None


def alias_overrides(argv: list[str]) -> list[str]:
    """`forget.X=...` is accepted as a short alias of `forget_rate.X=...` (the papers write forget.class_id)."""
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
        from hydra.core.hydra_config import HydraConfig

        check_overrides(cfg, list(HydraConfig.get().overrides.task))  # this job's own overrides
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
                return (f"error: {key}={choice!r} is not valid{did_you_mean(choice, options)}; accepted: "
                        f"{', '.join(options)}")
    return None


def hydra_error_line(err: Exception) -> str:
    """Hydra's composition errors span several lines; a key that does not exist gets the keys that do."""
    cause = err.__cause__
    full_key, parent = getattr(cause, "full_key", None), getattr(cause, "parent_node", None)
    if full_key and isinstance(parent, DictConfig) and "not in struct" in str(cause):
        keys = sorted(str(k) for k in parent.keys())
        where = full_key.rpartition(".")[0] or "the top level"
        return (f"error: {full_key} is not a key of this config{did_you_mean(str(cause.key), keys)}; accepted "
                f"under {where}: {', '.join(keys)}; ++{full_key}=... adds it")
    return "error: " + " ".join(line.strip() for line in str(err).splitlines() if line.strip())


# Hydra mappings whose keys are the user's to choose.
FREE_FORM_HYDRA = ("hydra.job.env", "hydra.sweeper.params", "hydra.launcher.additional_parameters",
                   "hydra.launcher.setup", "hydra.job_logging", "hydra.hydra_logging")


def unread_key(argv: list[str], config_dir: str = CONFIG_DIR) -> str | None:
    """One-line error for `+key=…` / `++key=…` that adds a key no part of the run reads: it would change
    the cell id (a duplicate record) while changing nothing else. None when every added key exists."""
    added = [a for a in argv[1:] if a.startswith("+")]
    if not added:
        return None
    from hydra import compose, initialize_config_dir

    # the launcher and sweeper chosen on the command line decide which hydra.* keys exist
    others = [v for a in argv[1:] if not a.startswith(("+", "-", "~")) and "=" in a
              and (not a.startswith("hydra") or a.startswith(("hydra/launcher=", "hydra/sweeper=")))
              for v in [first_sweep_value(a)] if v]
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            base = compose("config", overrides=others, return_hydra_config=any(
                a.lstrip("+").startswith("hydra") for a in added))
    except Exception:  # the run itself reports what is wrong with the other overrides
        return None
    missing = object()
    for arg in added:
        key = arg.lstrip("+").partition("=")[0]
        if OmegaConf.select(base, key, default=missing) is missing:
            parent = key.rpartition(".")[0]
            node = OmegaConf.select(base, parent) if parent else base
            keys = sorted(str(k) for k in node.keys()) if isinstance(node, DictConfig) else []
            hydra_key = key.startswith("hydra.")
            if hydra_key and (not keys or parent.startswith(FREE_FORM_HYDRA)):
                continue  # a free-form mapping of Hydra's (env_set, sweep params, ...): adding to it is its use
            where = f"accepted under {parent or 'the top level'}: {', '.join(keys)}" if keys else \
                f"{parent} is not a config node"
            effect = ("the launcher and sweeper in use never read it" if hydra_key else
                      "would add it to the cell id and change nothing else")
            return (f"error: {key} is not a key this run reads{did_you_mean(key.rpartition('.')[2], keys)} "
                    f"(`{arg.partition('=')[0]}=`: {effect}); {where}")
    return None


def main() -> None:
    import errno

    from hydra.errors import CompactHydraException

    sys.argv = alias_overrides(sys.argv)
    if message := repeated_key(sys.argv) or unknown_group_choice(sys.argv) or unread_key(sys.argv):
        print(message, file=sys.stderr)
        sys.exit(2)
    if message := check_multirun(sys.argv, CONFIG_DIR):  # every job of a grid, before the first trains
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
