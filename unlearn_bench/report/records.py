"""Cell records into one frame (docs/statistics.md): reading and checking the JSON records, the labels of a
setting (dataset / model / forget set / augmentation / variant) and of a configuration, and the filters of the
leaderboard's command line."""

from __future__ import annotations

import argparse
import json
import math
import re
import warnings
from functools import cache
from pathlib import Path

import pandas as pd
import yaml

from unlearn_bench.config import is_method_config
from unlearn_bench.report.formatting import section_title
from unlearn_bench.report.methods_page import CONF as METHOD_CONF
from unlearn_bench.tug_of_war import tug_of_war, tug_of_war_mia

POOL_METRICS = ["forgetting_quality", "final_score", "klom_forget", "klom_retain", "klom_test", "klom_forget_p95",
                "lira_auc", "lira_tpr_at_1fpr"]
COMPARISON_METRICS = ["ToW", "ToW_MIA", "JS_forget", "activation_distance"]  # against retrain, docs/methods.md
METRICS = ["UA", "RA", "TA", "MIA", "MIA_latent", "forget_TA", "avg_gap", "RTE", "relearn_FA", *COMPARISON_METRICS, "acc_retained",
           "FD", "UA_dimra", *POOL_METRICS, "forgetting_quality_ci"]
TASKS = ("classification", "generation", "pool")
ORIGINAL, RETRAIN, FLOOR = "original", "retrain", "retrain floor"
REFERENCES = (ORIGINAL, RETRAIN)  # rows every record carries besides its method
REFERENCE_ROWS = (RETRAIN, FLOOR, ORIGINAL)
GROUP = ["dataset", "model", "forget", "augmentation", "variant"]
AUG_ORDER = ["none", "default", "randaugment", "autoaugment", "random_erasing", "trivialaug", "augmix"]  # docs/augmentation.md
REQUIRED = ("config", "metrics", "retrain_metrics", "method")
# Config keys that say which setting a record belongs to, shown as columns rather than as a variant label.
NAMED_KEYS = ("dataset.name", "model.name", "model.arch", "augmentation.name", "forget_rate.mode",
              "forget_rate.rate", "forget_rate.count", "forget_rate.class_id")


def reference_first(method: str) -> int:
    """Sort key of the generation table and grids: original, retrain, then the methods."""
    return REFERENCES.index(method) if method in REFERENCES else len(REFERENCES)


def forget_label(forget: dict) -> str:
    if forget.get("mode") == "class":
        return f"class {forget.get('class_id')}"
    if forget.get("mode") == "corrupted":
        return f"corrupted {100 * float(forget['share']):g}%"
    if forget.get("mode") == "memorization":
        size = f"n={forget['count']}" if forget.get("count") is not None else f"{100 * float(forget['rate']):g}%"
        return f"memorization {forget.get('stratum')} {size}"
    if forget.get("mode") == "subpopulation":
        return f"subpopulation class {forget.get('class_id')} cluster {forget.get('cluster')}/{forget.get('clusters')}"
    if forget.get("count") is not None:
        return f"random n={forget['count']}"
    return f"random {100 * float(forget['rate']):g}%"


def forget_order(label: str) -> tuple:
    """Numeric order of forget settings: random rates, then counts, then classes, then corrupted shares."""
    numbers = [float(x) for x in re.findall(r"[\d.]+", label)] or [0.0]
    kinds = {"corrupted": 3, "memorization": 4, "subpopulation": 5}
    kind = kinds.get(label.split()[0], 0 if label.endswith("%") else 1 if "n=" in label else 2)
    return kind, numbers[0]


def model_label(model: dict) -> str:
    """`timm` alone says nothing: a timm model is labelled by its architecture."""
    return f"timm:{model['arch']}" if model.get("name") == "timm" and model.get("arch") else model["name"]


def flatten(tree: object, prefix: str = "") -> dict[str, str]:
    """Nested config -> {dotted key: JSON text of the value}: one comparable string per leaf."""
    if isinstance(tree, dict):
        flat: dict[str, str] = {}
        for key, value in tree.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: json.dumps(tree, sort_keys=True)}


def differing(configs: list[dict[str, str]]) -> list[str]:
    """Keys whose values are not the same in every config (a key missing in one counts as different)."""
    keys = sorted(set().union(*configs)) if configs else []
    return [k for k in keys if len({c.get(k, "<unset>") for c in configs}) > 1]


@cache
def introduced_switches(name: str) -> dict:
    """The `introduced:` block of a method's YAML: switches added after records existed, with the value
    those records ran with ({} for a method without one or not in this checkout)."""
    path = METHOD_CONF / f"{name}.yaml"
    block = (yaml.safe_load(path.read_text()) or {}).get("introduced") if path.is_file() else None
    return dict(block) if isinstance(block, dict) else {}


def with_introduced(method: dict) -> dict:
    """A record's method config with every switch it predates set to the value it ran with, so a record made
    before a switch existed and one made at that value are one configuration, and a record made at another
    value is labelled by both values (`unsir (noise_bn=eval)` beside `unsir (noise_bn=train)`). Nested method
    configs (RUM's strata) are filled alike."""
    filled = {k: with_introduced(v) if is_method_config(v) else v for k, v in method.items()}
    for key, value in introduced_switches(str(method.get("name"))).items():
        filled.setdefault(key, value)
    return filled


def describe(config: dict[str, str], keys: list[str], strip: str = "") -> str:
    """`key=value, …` for the keys that tell configurations apart; a record without the key predates it (a
    method switch's earlier value is filled in by with_introduced, so this shows for other keys only)."""
    parts = []
    for key in keys:
        value = config.get(key, "(predates the key)")
        parts.append(f"{key[len(strip):] if key.startswith(strip) else key}={value.strip(chr(34))}")
    return ", ".join(parts)


def load_records(folders: list[Path]) -> pd.DataFrame:
    """One row per record and per reference row it carries; `setting_sig` and `method_sig` identify the
    configuration (everything but the seed) so rows of different configurations are never merged."""
    rows = []
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            try:
                record = json.loads(path.read_text())
                if isinstance(record, dict) and record.get("task") == "blind":
                    warnings.warn(f"excluding {path}: a blind-tuning objective (eval=blind), not an evaluation",
                                  stacklevel=1)
                    continue
                missing = [k for k in REQUIRED if k not in record]
                if missing:
                    raise ValueError(f"missing {', '.join(missing)}")
                cfg = record["config"]
                if "optimized_metric" in cfg:  # hparams_search=optuna sets it
                    warnings.warn(f"excluding {path}: a hyperparameter-search trial, not an evaluation", stacklevel=1)
                    continue
                fill_tug_of_war(record)
                flat = flatten({k: with_introduced(v) if k == "method" else v for k, v in cfg.items() if k != "seed"})
                setting = {k: v for k, v in flat.items() if not k.startswith("method.")}
                method_cfg = {k: v for k, v in flat.items() if k.startswith("method.")}
                task = record.get("task", "classification")
                row = {"file": str(path), "task": task, "grids": record.get("grids", {}),
                       "grid_classes": record.get("grid_classes"),
                       "dataset": cfg["dataset"]["name"], "model": model_label(cfg["model"]),
                       "augmentation": cfg["augmentation"]["name"], "forget": forget_label(cfg["forget_rate"]),
                       "method": cfg["method"].get("label") or record["method"], "seed": cfg["seed"],
                       "diverged": record.get("diverged", False), "finished": record.get("finished", 0.0),
                       "setting_sig": json.dumps(setting, sort_keys=True),
                       "method_sig": json.dumps(method_cfg, sort_keys=True),
                       "gap_over": json.dumps(cfg.get("metrics", {}).get("gap_over", ["UA", "RA", "TA", "MIA"])),
                       "reference": False}
                row.update({k: record["metrics"].get(k) for k in METRICS})
                for key in ("avg_gap", *json.loads(row["gap_over"])) if task == "classification" else ():
                    value = record["metrics"].get(key)
                    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                        warnings.warn(f"{path}: metric {key} is {value!r}; the row's mean and n leave this seed "
                                      "out", stacklevel=1)
                if row["method"] != RETRAIN:  # method=retrain is the reference row every record carries
                    rows.append(row)
                # Every record carries its references: their rows exist even when method=retrain was not run.
                references = {RETRAIN: record["retrain_metrics"], ORIGINAL: record.get("original_metrics"),
                              FLOOR: record.get("retrain2_metrics")}
                if task == "pool":
                    points = record.get("example_points", {})
                    row["final_points"] = final_points(points.get("method"), record["metrics"], record["retrain_metrics"])
                for name, metrics in references.items():
                    if metrics:
                        extra = {}
                        if task == "pool":
                            part = {ORIGINAL: "original", FLOOR: "retrain2"}.get(name)
                            extra["final_points"] = final_points(points.get(part), metrics, record["retrain_metrics"])
                        rows.append({**row, "method": name, "diverged": False, "method_sig": "{}",
                                     "reference": True, **{k: metrics.get(k) for k in METRICS}, **extra})
            except (ValueError, KeyError, TypeError, OSError, AttributeError) as err:
                warnings.warn(f"skipping {path}: {err}", stacklevel=1)
    frame = pd.DataFrame(rows)
    return label_configurations(frame) if not frame.empty else frame


def fill_tug_of_war(record: dict) -> None:
    """ToW and ToW-MIA are functions of a row's UA, RA, TA, MIA and the retrain row's: computed here, with the
    runner's own formula, for records made before the runner stored them (JS and activation distance need
    the models' outputs and stay missing there)."""
    retrain = record.get("retrain_metrics") or {}
    if not all(k in retrain for k in ("UA", "RA", "TA", "MIA")):
        return
    for name in ("metrics", "retrain_metrics", "retrain2_metrics", "original_metrics"):
        metrics = record.get(name)
        if metrics and "ToW" not in metrics and all(k in metrics for k in ("UA", "RA", "TA", "MIA")):
            metrics["ToW"] = tug_of_war(metrics, retrain)
            metrics["ToW_MIA"] = tug_of_war_mia(metrics, retrain)


def final_points(points: list[float] | None, metrics: dict, retrain: dict) -> list[float] | None:
    """Per forget example, the points of F times the row's utility ratios: their mean is the final score, so
    two rows of one forget set can be compared example by example."""
    if points is None or "RA" not in metrics or not retrain.get("RA") or not retrain.get("TA"):
        return None
    ratio = (metrics["RA"] / retrain["RA"]) * (metrics["TA"] / retrain["TA"])
    return [p * ratio for p in points]


def label_configurations(frame: pd.DataFrame) -> pd.DataFrame:
    """Give each configuration its own label: `variant` names the setting keys that differ between records
    that share dataset / model / forget / augmentation; a method whose records differ in its own keys gets
    one row per configuration, `ft (lr=3.0)`. The same configuration and seed twice is reported."""
    frame = frame.copy()
    frame["variant"] = ""
    frame["method_base"] = frame["method"]  # the name before a configuration suffix
    for _, part in frame.groupby(["task", "dataset", "model", "forget", "augmentation"], sort=False):
        sigs = list(dict.fromkeys(part["setting_sig"]))
        if len(sigs) > 1:
            configs = [json.loads(s) for s in sigs]
            keys = [k for k in differing(configs) if k not in NAMED_KEYS]
            for sig, config in zip(sigs, configs):
                frame.loc[part.index[part["setting_sig"] == sig], "variant"] = describe(config, keys)
    methods = frame[~frame["reference"]]
    for _, part in methods.groupby(["setting_sig", "method"], sort=False):
        sigs = list(dict.fromkeys(part["method_sig"]))
        if len(sigs) > 1:
            configs = [json.loads(s) for s in sigs]
            keys = differing(configs)
            for sig, config in zip(sigs, configs):
                index = part.index[part["method_sig"] == sig]
                frame.loc[index, "method"] = f"{part['method'].iloc[0]} ({describe(config, keys, 'method.')})"
    key = ["setting_sig", "method", "method_sig", "seed"]
    records = frame[~frame["reference"]]
    for _, dup in records[records.duplicated(key, keep=False)].groupby(key, sort=False):
        newest = dup.sort_values("finished").iloc[-1]["file"]
        warnings.warn(f"the same configuration and seed {dup['seed'].iloc[0]} of {dup['method'].iloc[0]} has "
                      f"{len(dup)} records ({', '.join(dup['file'])}); using the most recent, {newest}", stacklevel=1)
    frame = frame.sort_values("finished")
    warn_unshared_references(frame)
    frame = frame[~(~frame["reference"] & frame.duplicated(key, keep="last"))]
    # A reference row is the same for every method of a cell: keep one per configuration and seed.
    return frame[~(frame["reference"] & frame.duplicated(["setting_sig", "method", "seed"], keep="last"))]


def warn_unshared_references(frame: pd.DataFrame) -> None:
    """Rows of one setting and seed are paired on the assumption that they share their reference models. The
    cache key names a model's recipe, not its bits: records made on another machine (other float kernels) or
    code version can carry the same keys and other models. Said when the records disagree on a reference
    model's UA / RA / TA; the table then shows the newest record's reference row."""
    references = frame[frame["reference"]]
    for (_, name, seed), part in references.groupby(["setting_sig", "method", "seed"], sort=False):
        values = part[["UA", "RA", "TA"]].astype(float).round(6).drop_duplicates()
        if len(values) > 1:
            shown = "; ".join(f"{r.UA:.2f} / {r.RA:.2f} / {r.TA:.2f}" for r in values.itertuples())
            warnings.warn(f"{section_title(tuple(part.iloc[0][GROUP]))}, seed {seed}: the records disagree on the {name} model (UA / RA / TA {shown}), "
                          f"so they were scored against different {name} models (another machine or code version) "
                          f"and their rows are not paired; the {name} row shown is the newest record's "
                          f"({part.iloc[-1]['file']})", stacklevel=1)


def parse_list(value: str | None) -> list[str] | None:
    """Comma-separated names; commas inside brackets belong to a name (`manif_smc[blend,away]`)."""
    if not value:
        return None
    names, depth, current = [], 0, ""
    for char in value:
        depth += {"[": 1, "(": 1, "]": -1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            names.append(current)
            current = ""
        else:
            current += char
    return [name.strip() for name in [*names, current] if name.strip()]


def select(frame: pd.DataFrame, args: argparse.Namespace) -> pd.DataFrame:
    frame = frame[frame["task"] == args.task]
    for column in ("dataset", "model", "augmentation", "forget"):
        wanted = parse_list(getattr(args, column))
        if wanted:
            frame = frame[frame[column].isin(wanted)]
    methods = parse_list(args.method)
    if methods:
        base = frame["method"].str.replace(r" \(.*\)$", "", regex=True)
        frame = frame[frame["method"].isin(methods) | base.isin(methods) | frame["reference"]]
    return frame


def seed_coverage(cells: pd.DataFrame, keys: list[str]) -> dict[int, tuple[int, int]]:
    """Per seed of `cells`, how many of the grid's cells it holds and the grid's size, the grid being every
    tuple of `keys` the frame holds at any seed: a seed holding them all is complete."""
    grid = set(cells[keys].itertuples(index=False, name=None))
    return {int(seed): (len(set(part[keys].itertuples(index=False, name=None)) & grid), len(grid))
            for seed, part in cells.groupby("seed")}


def complete_seeds(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The rows of the seeds whose grid is complete (a record for every configuration × setting that the
    selected records hold at any seed), and a line per seed left out saying how much of it is in. A grid that
    runs seed by seed has one partial seed at a time; on it some rows would rest on n + 1 seeds and the rest
    on n, and the tests against the best would pair some rows on more seeds than others."""
    methods = frame[~frame["reference"]]
    coverage = seed_coverage(methods, ["setting_sig", "method_sig"])
    total = next(iter(coverage.values()), (0, 0))[1]
    left_out, notes = [], []
    for seed in sorted(frame["seed"].unique()):  # a seed with reference rows only has none of the grid
        have = coverage.get(int(seed), (0, total))[0]
        if have != total:
            left_out.append(seed)
            notes.append(f"seed {seed} left out until its grid is complete ({have} of the {total} method cells; "
                         "--complete-seeds)")
    return frame[~frame["seed"].isin(left_out)], notes


def filter_values(frame: pd.DataFrame, args: argparse.Namespace) -> str:
    """What the records hold for each filter given: a filter that matches nothing says what would match."""
    parts = []
    for column in ("task", "dataset", "model", "augmentation", "forget", "method"):
        if column == "task" or getattr(args, column, None):
            values = sorted(set(frame.loc[~frame["reference"], column].astype(str))) if column == "method" \
                else sorted(set(frame[column].astype(str)))
            parts.append(f"--{column}: {', '.join(values)}")
    return "the records hold " + "; ".join(parts)

