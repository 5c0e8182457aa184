"""Every job of a multirun checked before the first one trains.

A launcher composes and validates a job only when it starts it, so a bad value in a later cell of a grid
used to surface after earlier cells had trained for minutes. Here the jobs are expanded as Hydra's basic
sweeper expands them (the preset's `hydra.sweeper.params`, then the command line's sweeps), each composed
and put through the run's own checks; the first failure is one line naming the job's overrides. Sweepers
that choose their jobs as they go (Optuna) are left to check each trial when it starts.
"""

from __future__ import annotations

import re

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from unlearn_bench.errors import UserError

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
HYDRA_FLAGS_WITH_VALUE = ("--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                          "--config-dir", "-cd", "--info", "-i", "--experimental-rerun")


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


def overrides_of(argv: list[str]) -> list[str]:
    """The command line's overrides (key=value words), Hydra's own flags and their values left out."""
    out, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg in HYDRA_FLAGS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-") and "=" in arg:
            out.append(arg)
    return out


def sweep_jobs(argv: list[str], config_dir: str) -> list[list[str]] | None:
    """The overrides of every job of a basic-sweeper multirun, in launch order; None when not a multirun or
    when another sweeper decides the jobs."""
    if not {"-m", "--multirun"} & set(argv[1:]):
        return None
    arguments = overrides_of(argv)
    firsts = [v for a in arguments for v in [first_sweep_value(a)] if v]
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        base = compose("config", overrides=firsts, return_hydra_config=True)
    if OmegaConf.select(base, "hydra.sweeper._target_") != BASIC_SWEEPER:
        return None
    params = OmegaConf.select(base, "hydra.sweeper.params") or {}
    preset = [f"{k}={v}" for k, v in params.items()]
    parser = OverridesParser.create()
    batches = BasicSweeper.split_arguments(parser.parse_overrides([*preset, *arguments]), None)
    return [list(job) for batch in batches for job in batch]


def check_job(overrides: list[str]) -> None:
    """The checks a run makes before any work, on one job's composed config (inside initialize_config_dir)."""
    from unlearn_bench.methods import check_method
    from unlearn_bench.validate import check_overrides, validate

    cfg = compose("config", overrides=overrides)
    validate(cfg)
    check_overrides(cfg, overrides)
    if cfg.method.get("task", "classification") == "classification":
        check_method(cfg.method)


def check_multirun(argv: list[str], config_dir: str) -> str | None:
    """One error line for the first job of a multirun that would fail its checks; None when all pass."""
    try:
        jobs = sweep_jobs(argv, config_dir)
    except Exception:  # a malformed sweep: Hydra itself reports it, in one line, when it parses it
        return None
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        for number, job in enumerate(jobs or []):
            try:
                check_job(job)
            except UserError as err:
                return f"error: job #{number} of the multirun ({' '.join(job)}): {err}; no job was started"
            except Exception:  # composition errors: Hydra reports them for the job that has them
                continue
    if jobs:
        print(f"multirun: {len(jobs)} jobs pass their checks")
    return None
