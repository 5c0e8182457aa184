"""Summarise tuning studies from their trial records (docs/tuning.md): per track and method, the trials run, the
best trial's values and objective beside doing nothing's on the same tuning seeds, and the seconds the
trials' unlearning took (the sum of their RTE), so a budget and its cost can be stated from files.

    unlearn-bench-tuning-summary --trial-records results/tuned/trial_records --out results/tuned

Writes studies.csv and studies.md into --out. A trial is one configuration of a method, scored over every
tuning seed it has a record for; a trial missing a seed that other trials of its study have is counted as
unfinished and left out of the best. The objective is the track's: the mean Avg Gap to the tuning seed's
retrain model (oracle) or the mean blind objective (blind; unlearn_bench/evaluation/blind.py).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd

from unlearn_bench.errors import ArgumentParser, one_line_errors
from unlearn_bench.tuning.study import OBJECTIVES, compose_cfg


def load_trials(folder: Path) -> pd.DataFrame:
    """One row per trial cell: track, method, the method's values (its config less the name), seed, the
    objective of the method and of doing nothing, the RTE and when it finished."""
    rows = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text())
            track = "blind" if record.get("task") == "blind" else "oracle"
            objective = OBJECTIVES[track][0]
            cfg = record["config"]
            values = {k: v for k, v in cfg["method"].items() if k not in ("name", "label", "search")}
            rows.append({"track": track, "method": record["method"], "seed": int(cfg["seed"]),
                         "values": json.dumps(values, sort_keys=True),
                         "objective": float(record["metrics"].get(objective, math.nan)),
                         "original": float((record.get("original_metrics") or {}).get(objective, math.nan)),
                         "RTE": float(record["metrics"].get("RTE", math.nan)), "finished": float(record["finished"])})
        except (ValueError, KeyError, TypeError, OSError) as err:
            print(f"warning: skipping {path}: {err}", file=sys.stderr)
    return pd.DataFrame(rows)


def searched(method: str) -> list[str]:
    """The keys of the method's `search:` block (its YAML is the source of the space)."""
    return list(compose_cfg([f"method={method}"]).method.get("search") or {})


def summarise(cells: pd.DataFrame) -> pd.DataFrame:
    """Per track and method: trials (finished / begun), cells, the best finished trial and doing nothing. A
    trial is finished when it has every tuning seed of its track (the seeds any of the track's records have)."""
    out = []
    seeds_of = {track: sorted(part["seed"].unique()) for track, part in cells.groupby("track")}
    for (track, method), study in cells.groupby(["track", "method"], sort=True):
        seeds = seeds_of[track]
        trials = study.groupby("values", sort=False).agg(
            objective=("objective", "mean"), seeds=("seed", "nunique"), first=("finished", "min"))
        finished = trials[trials["seeds"] == len(seeds)]
        # the earliest of equal objectives, as Optuna's best_trial is
        best = finished.sort_values(["objective", "first"]).iloc[0] if not finished.empty else None
        out.append({"track": track, "method": method, "tuning_seeds": ",".join(map(str, seeds)),
                    "trials_finished": len(finished), "trials_begun": len(trials), "cells": len(study),
                    "best_objective": best["objective"] if best is not None else math.nan,
                    "doing_nothing": study.groupby("seed")["original"].first().mean(),
                    "best_values": json.dumps({k: json.loads(best.name)[k] for k in searched(method)})
                    if best is not None else "",
                    "unlearning_seconds": study["RTE"].sum()})
    return pd.DataFrame(out)


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trial-records", type=Path, default=Path("results/tuned/trial_records"))
    parser.add_argument("--out", type=Path, default=Path("results/tuned"))
    args = parser.parse_args(argv)
    cells = load_trials(args.trial_records)
    if cells.empty:
        print(f"error: no trial records in {args.trial_records}", file=sys.stderr)
        return 2
    table = summarise(cells)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "studies.csv", index=False)
    shown = table.assign(best_objective=table["best_objective"].round(2), doing_nothing=table["doing_nothing"].round(2),
                         unlearning_seconds=table["unlearning_seconds"].round(0).astype(int))
    (args.out / "studies.md").write_text("\n".join([
        "# Tuning studies", "",
        f"From the trial records in `{args.trial_records}` (`unlearn-bench-tuning-summary`). Objective: mean "
        "over the tuning seeds of the Avg Gap to retrain (oracle) or of the blind objective (blind), lower is "
        "better; `doing_nothing`: the original model's on the same seeds; `unlearning_seconds`: the trials' RTE "
        "summed (the unlearning alone, not the scoring).", "", shown.to_markdown(index=False), ""]))
    print(f"wrote {args.out / 'studies.csv'} and studies.md ({len(table)} studies)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
