"""Tune a method on its declared search space (docs/tuning.md) and write the chosen values as a method config
that the runner selects with `method=tuned/<scale>/<track>/<method>`.

    unlearn-bench-tune --method salun --scale cpu --trials 20 --tuning-seeds 100,101,102 \
        -- forget_rate=random_10

Every method gets the same number of Optuna TPE trials (sampler seeded), each scored over the tuning seeds
by the track's objective: `oracle`, the mean Avg Gap to the retrain model (how the papers tune); `blind`,
the mean blind objective of unlearn_bench/evaluation/blind.py (no retrain model, a validation split of test
images outside T; needs a `dataset.test_size` that leaves them, as scale=cpu does). Tuning seeds must be disjoint from the evaluation seeds
(--evaluation-seeds, default 0-4): a method is never tuned on the forget sets it is scored on. Trial
records go to --trial-records (default outputs/trial_records), never into the leaderboard's records.
Arguments after `--` are Hydra overrides shared by every trial. `--method` takes a comma list (the zoo:
`make tune-zoo TRACK=oracle|blind`): every method gets the same budget, and every name and search space is
checked before the first trial runs; `--jobs N` tunes N methods at a time, one process each.

A study resumes from its trial records: the seeded sampler proposes the same values in the same order, so
a trial whose cells already have records is replayed from them (`skip:` lines) and an interrupted study
continues where it stopped, with the values an uninterrupted one would have chosen. `--force` reruns
every trial cell instead.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import shlex
import sys
from functools import partial
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf, open_dict

from unlearn_bench.checks import choice, integer
from unlearn_bench.errors import ArgumentParser, ConfigError, one_line_errors
from unlearn_bench.run import CONFIG_DIR, run
from unlearn_bench.validate import check_search

TRACKS = ("oracle", "blind")
OBJECTIVES = {"oracle": ("avg_gap", "mean Avg Gap"), "blind": ("blind_objective", "mean blind objective")}


def seeds(text: str) -> list[int]:
    return sorted({int(s) for s in text.split(",") if s.strip()})


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=overrides)


def suggest(trial, key: str, spec) -> float | int:
    if spec.get("int"):
        return trial.suggest_int(key, int(spec.low), int(spec.high), log=bool(spec.get("log")))
    return trial.suggest_float(key, float(spec.low), float(spec.high), log=bool(spec.get("log")))


def default_startup(trials: int) -> int:
    """Random trials before TPE models the objective: Optuna's 10, but at most half the budget, so a small
    budget is still a TPE search and not a random one."""
    return max(1, min(10, trials // 2))


def check_study(track: str, trials: int, tuning_seeds: list[int], evaluation_seeds: list[int],
                startup_trials: int | None = None) -> None:
    """The study's own arguments, before any trial (and before any worker process starts)."""
    if track not in TRACKS:
        raise ConfigError("--track", track, TRACKS)
    if trials < 1:
        raise ConfigError("--trials", trials, "an integer >= 1")
    if startup_trials is not None and not 1 <= startup_trials <= trials:
        raise ConfigError("--startup-trials", startup_trials, f"an integer in [1, --trials = {trials}]")
    if not tuning_seeds or set(tuning_seeds) & set(evaluation_seeds):
        raise ConfigError("--tuning-seeds", tuning_seeds, f"seeds disjoint from the evaluation seeds {evaluation_seeds}")


def tune(method: str, scale: str, track: str, trials: int, tuning_seeds: list[int], evaluation_seeds: list[int],
         overrides: list[str], trial_records: Path, out_root: Path, sampler_seed: int = 0,
         force: bool = False, startup_trials: int | None = None, command: str | None = None) -> Path:
    """Run the study and write conf/method/tuned/<scale>/<track>/<method>.yaml; returns its path. Trials
    replay from their records unless `force` (see the module docstring); `command` is quoted in the file's
    header (default: the study's own arguments)."""
    import optuna

    check_study(track, trials, tuning_seeds, evaluation_seeds, startup_trials)
    startup = default_startup(trials) if startup_trials is None else startup_trials
    base = [f"method={method}", f"scale={scale}", "logger=none", "progress=false", f"force={str(force).lower()}",
            f"paths.records_dir={trial_records}", *(["eval=blind"] if track == "blind" else []), *overrides]
    metric, described = OBJECTIVES[track]
    method_cfg = compose_cfg(base).method
    space = method_cfg.get("search")
    if not space:
        raise ConfigError("--method", method, "a method whose YAML declares a search: block")
    check_search(method_cfg)

    def objective(trial) -> float:
        values = {key: suggest(trial, key, spec) for key, spec in space.items()}
        gaps = []
        for seed in tuning_seeds:
            cfg = compose_cfg([*base, f"seed={seed}"])
            with open_dict(cfg):
                for key, value in values.items():
                    cfg.method[key] = value
            gap = run(cfg)["metrics"].get(metric, math.nan)
            gaps.append(gap if math.isfinite(gap) else math.inf)
        return sum(gaps) / len(gaps)

    def report(study, trial) -> None:
        print(f"{method} ({track}): trial {trial.number + 1}/{trials}, {described} {trial.value:.4f} at "
              f"{trial.params}; best {study.best_value:.4f}", flush=True)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(
        seed=sampler_seed, n_startup_trials=startup))
    study.optimize(objective, n_trials=trials, callbacks=[report])
    best = study.best_params

    path = out_root / "tuned" / scale / track / f"{method}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    command = command or f"unlearn-bench-tune --method {method} --scale {scale} --trials {trials}"
    lines = [f"# Tuned {method} ({track} track, scale={scale}): {trials} Optuna TPE trials ({startup} random "
             f"startup trials, sampler seed {sampler_seed}) on tuning seeds {','.join(map(str, tuning_seeds))},",
             f"# disjoint from the evaluation seeds {','.join(map(str, evaluation_seeds))}; best {described} "
             f"{study.best_value:.4f}. Generated {dt.date.today().isoformat()} by:",
             f"#   {command}",
             "defaults:", f"  - /method/{method}@_here_", "  - _self_",
             *(f"{key}: {OmegaConf.to_yaml({key: value}).split(': ', 1)[1].strip()}" for key, value in best.items()),
             f"label: {method} (tuned, {track})", ""]
    path.write_text("\n".join(lines))
    return path


# Keys the study sets from its own arguments: a pass-through override of one would contradict them.
OWN_KEYS = {"method": "use --method", "scale": "use --scale", "eval": "set by --track",
            "seed": "the study sets it from --tuning-seeds"}


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, overrides = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", required=True)
    parser.add_argument("--scale", default="cpu")
    parser.add_argument("--track", default="oracle", help="oracle (Avg Gap to retrain) | blind (no retrain model)")
    parser.add_argument("--trials", type=int, default=20, help="trials per method (the same for every method)")
    parser.add_argument("--tuning-seeds", type=seeds, default=[100, 101, 102])
    parser.add_argument("--evaluation-seeds", type=seeds, default=[0, 1, 2, 3, 4])
    parser.add_argument("--trial-records", type=Path, default=Path("outputs/trial_records"))
    parser.add_argument("--out", type=Path, default=Path(CONFIG_DIR) / "method", help="method config root")
    parser.add_argument("--sampler-seed", type=int, default=0)
    parser.add_argument("--startup-trials", type=int, default=None,
                        help="random trials before TPE (default: min(10, trials // 2), at least 1)")
    parser.add_argument("--force", action="store_true", help="rerun every trial cell instead of replaying records")
    parser.add_argument("--jobs", type=int, default=1, help="methods tuned at a time, one process each")
    args = parser.parse_args(ours)
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    try:
        for override in overrides:  # the study's own choices cannot be overridden behind its back
            key = override.lstrip("+~").partition("=")[0]
            if key in OWN_KEYS or key.startswith("hydra."):
                raise ConfigError(override.partition("=")[0], override.partition("=")[2],
                                  f"not a pass-through override of unlearn-bench-tune ({OWN_KEYS.get(key, 'the study sets it')})")
        check_study(args.track, args.trials, args.tuning_seeds, args.evaluation_seeds, args.startup_trials)
        integer(1)("--jobs", args.jobs)
        integer(0, 2**32 - 1)("--sampler-seed", args.sampler_seed)  # numpy's seed range (Optuna's TPE)
        choice(*sorted(p.stem for p in (Path(CONFIG_DIR) / "scale").glob("*.yaml")))("--scale", args.scale)
        for method in methods:  # every name and search space first: a typo in the last costs nothing
            cfg = compose_cfg([f"method={method}", f"scale={args.scale}", *overrides])
            if not cfg.method.get("search"):
                raise ConfigError("--method", method, "a method with a `search:` space (docs/tuning.md)")
            check_search(cfg.method)
        study = partial(tune, scale=args.scale, track=args.track, trials=args.trials, tuning_seeds=args.tuning_seeds,
                        evaluation_seeds=args.evaluation_seeds, overrides=overrides,
                        trial_records=args.trial_records, out_root=args.out, sampler_seed=args.sampler_seed,
                        force=args.force, startup_trials=args.startup_trials,
                        command=shlex.join(["unlearn-bench-tune", *argv]))
        if args.jobs == 1:
            paths = [study(method) for method in methods]
        else:  # independent studies: one process per method; the model cache's locks share the references
            from joblib import Parallel, delayed

            paths = Parallel(n_jobs=args.jobs)(delayed(study)(method) for method in methods)
        for method, path in zip(methods, paths):
            print(f"wrote {path}; evaluate with method=tuned/{args.scale}/{args.track}/{method}")
    except MissingConfigException as err:  # an unknown method name (any UserError: one_line_errors)
        print(f"error: --method: {err}".splitlines()[0], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
