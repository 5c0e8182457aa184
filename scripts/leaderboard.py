#!/usr/bin/env python
"""Aggregate cell records into a leaderboard that a reader can check (docs/statistics.md).

    python scripts/leaderboard.py --records results/records --out results/salun_table \
        --augmentation default --title "SalUn table (CPU scale)"

Writes leaderboard.md, leaderboard.csv, leaderboard.html and leaderboard.png into --out; with --wandb
also logs the table to W&B (offline unless WANDB_MODE=online).

What a classification table holds, per setting (dataset / model / forget set / augmentation):
- one row per *configuration*: records that differ in anything but the seed are never merged. Two settings
  that share a name but differ in, say, the training recipe get their own sections, labelled by the keys
  that differ; two configurations of one method get their own rows (`ft (lr=3.0)`);
- the reference rows: `retrain` (the reference, gap 0), `retrain floor` (the gap between two retrain models
  on the same D_r with different training seeds: the noise of retraining) and `original` (doing nothing);
- mean ± 95 % Student-t interval with n for every metric; the Avg Gap by both estimators, labelled
  (per-seed: the mean of |θ_u − θ_r| seed by seed; gap of means: |mean θ_u − mean θ_r|, the papers');
- a paired two-sided t-test over seeds of each method against the best of its setting (lowest per-seed
  Avg Gap): the best and every method tied with it (p ≥ 0.05) are in bold; methods not below doing
  nothing, or inside the retrain floor, are marked;
- Kendall τ between the method rankings of two disjoint halves of the seeds, and the regime line
  (the original's forget / retain / test accuracy and its gap over the floor), with a warning where a
  setting misses docs/statistics.md's bar;
- where a dataset / model / augmentation has two or more forget settings: Kendall τ between their method
  rankings, with a 95 % bootstrap interval over seeds (rank_agreement.csv and a section of the Markdown):
  does the ranking change from random forgetting to a class, a memorisation stratum or a subpopulation?
- where a setting holds tuned rows (`method=tuned/<scale>/<track>/<method>`, docs/tuning.md) beside the default
  rows: per method and track, the paired per-seed difference tuned − default with its interval and p
  (tuned_vs_default.csv), and Kendall τ between the zoo's default and tuned rankings (tuned_ranking.csv);
  where it holds two tracks' rows: per method the paired per-seed difference between the tracks and τ
  between their rankings (tuned_tracks.csv).

Corrupt or partial records are skipped with a warning naming the file; hyperparameter-search trials
(records of an `hparams_search` run) are excluded with a warning; the same configuration and seed twice is
reported, and the most recent record is used.

Generation records (task=generation) form their own table with --task generation: UA, accuracy on the
retained classes, Fréchet distance, UA after DiMRA and run time, with the original and retrain rows;
--grids also lays out each dataset's sample grids (seed 0) in one figure.

    python scripts/leaderboard.py --task generation --records results/records --out results/generation --grids
"""

from __future__ import annotations

import argparse
import html
import json
import math
import re
import sys
import warnings
from pathlib import Path

import pandas as pd

from unlearn_bench import verdict

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


def describe(config: dict[str, str], keys: list[str], strip: str = "") -> str:
    parts = []
    for key in keys:
        value = config.get(key, "unset")
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
                flat = flatten({k: v for k, v in cfg.items() if k != "seed"})
                setting = {k: v for k, v in flat.items() if not k.startswith("method.")}
                method_cfg = {k: v for k, v in flat.items() if k.startswith("method.")}
                task = record.get("task", "classification")
                row = {"file": str(path), "task": task, "grids": record.get("grids", {}),
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
    from unlearn_bench.metrics.compare import tug_of_war, tug_of_war_mia

    retrain = record.get("retrain_metrics") or {}
    if not all(k in retrain for k in ("UA", "RA", "TA", "MIA")):
        return
    for name in ("metrics", "retrain_metrics", "retrain2_metrics", "original_metrics"):
        metrics = record.get(name)
        if metrics and "ToW" not in metrics and all(k in metrics for k in ("UA", "RA", "TA", "MIA")):
            metrics["ToW"] = tug_of_war(metrics, retrain, None, None)
            metrics["ToW_MIA"] = tug_of_war_mia(metrics, retrain, None, None)


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
    frame = frame[~(~frame["reference"] & frame.duplicated(key, keep="last"))]
    # A reference row is the same for every method of a cell: keep one per configuration and seed.
    return frame[~(frame["reference"] & frame.duplicated(["setting_sig", "method", "seed"], keep="last"))]


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


def filter_values(frame: pd.DataFrame, args: argparse.Namespace) -> str:
    """What the records hold for each filter given: a filter that matches nothing says what would match."""
    parts = []
    for column in ("task", "dataset", "model", "augmentation", "forget", "method"):
        if column == "task" or getattr(args, column, None):
            values = sorted(set(frame.loc[~frame["reference"], column].astype(str))) if column == "method" \
                else sorted(set(frame[column].astype(str)))
            parts.append(f"--{column}: {', '.join(values)}")
    return "the records hold " + "; ".join(parts)


def gap_of_means(method: pd.DataFrame, retrain: pd.DataFrame, over: list[str]) -> float:
    """The papers' estimator: average each metric over the seeds both share, then mean |difference|."""
    seeds = sorted(set(method["seed"]) & set(retrain["seed"]))
    if not seeds:
        return math.nan
    a = method.set_index("seed").loc[seeds, over].astype(float).mean()
    b = retrain.set_index("seed").loc[seeds, over].astype(float).mean()
    return float((a - b).abs().mean())


def paired(method: pd.DataFrame, other: pd.DataFrame) -> tuple[list[float], list[float]]:
    """Per-seed Avg Gaps of two rows on the seeds they share, in seed order."""
    a, b = method.set_index("seed")["avg_gap"], other.set_index("seed")["avg_gap"]
    seeds = sorted(set(a.index) & set(b.index))
    return [float(a[s]) for s in seeds], [float(b[s]) for s in seeds]


def mark_best_and_ties(table: pd.DataFrame, by_method: dict, best: str, p_value, skip) -> dict[int, list[str]]:
    """Set `p_vs_best` and `tied_with_best` (p ≥ α; reference rows get a p but are never bold) for every row
    `skip` leaves; returns each such row's marks so far ("best" / "tied with best")."""
    marks: dict[int, list[str]] = {}
    for i, row in table.iterrows():
        if skip(row):
            continue
        marks[i] = []
        if row["method"] == best:
            table.loc[i, "tied_with_best"] = True
            marks[i].append("best")
            continue
        p = p_value(by_method[row["method"]], by_method[best])
        table.loc[i, "p_vs_best"] = p
        if p >= verdict.ALPHA and not row["reference"]:
            table.loc[i, "tied_with_best"] = True
            marks[i].append("tied with best")
    return marks


def gaps_by_seed(rows: pd.DataFrame, rename: dict[str, str] | None = None) -> dict[str, dict[int, float]]:
    """{method: {seed: per-seed Avg Gap}}: what the rank statistics of verdict.py take; `rename` maps a
    method's label to the one it is compared under."""
    rename = rename or {}
    return {rename.get(m, m): dict(zip(g["seed"], g["avg_gap"].astype(float)))
            for m, g in rows.groupby("method", sort=False)}


def setting_statistics(part: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """One setting's rows: mean, 95 % t-interval and n of every metric, both gap estimators, the paired test
    against the best method, the marks; plus the setting's regime and rank stability."""
    over = json.loads(part["gap_over"].iloc[0])
    retrain = part[part["method"] == RETRAIN]
    rows = []
    for method, rows_m in part.groupby("method", sort=False):
        # n: the seeds the Avg Gap averages (a NaN gap is left out, and named when the records load); rows
        # without an Avg Gap at all (generation) count their seeds
        gaps = pd.to_numeric(rows_m["avg_gap"], errors="coerce") if "avg_gap" in rows_m else pd.Series(dtype=float)
        finite = gaps.notna() & gaps.abs().ne(float("inf"))
        counted = rows_m.loc[finite, "seed"] if finite.any() else rows_m["seed"]
        row = {"method": method, "n": counted.nunique(), "diverged": int(rows_m["diverged"].sum()),
               "reference": bool(rows_m["reference"].iloc[0])}
        for metric in METRICS:
            if metric in rows_m and rows_m[metric].notna().any():
                mean, half, n = verdict.t_interval(rows_m[metric].dropna().astype(float).tolist())
                row.update({f"{metric}_mean": mean, f"{metric}_ci": half})
        if "avg_gap_mean" in row:
            row["avg_gap_of_means"] = 0.0 if method == RETRAIN else gap_of_means(rows_m, retrain, over)
        rows.append(row)
    table = pd.DataFrame(rows)
    stats = {"tau": math.nan, "tau_halves": (0, 0), "best": None}
    if "avg_gap_mean" not in table:
        return table, stats
    by_method = {m: g for m, g in part.groupby("method", sort=False)}
    candidates = table[~table["reference"]].dropna(subset=["avg_gap_mean"])
    table["p_vs_best"], table["tied_with_best"], table["marks"] = math.nan, False, ""
    if not candidates.empty:
        best = candidates.sort_values("avg_gap_mean").iloc[0]["method"]
        stats["best"] = best
        all_marks = mark_best_and_ties(table, by_method, best, lambda a, b: verdict.paired_p(*paired(a, b)),
                                       skip=lambda row: row["reference"])
        for i, marks in all_marks.items():
            row = table.loc[i]
            if ORIGINAL in by_method:  # not significantly below doing nothing
                diff = paired_difference(by_method[row["method"]], by_method[ORIGINAL])
                if diff["n"] and diff["difference"] + (diff["difference_ci"] if diff["n"] > 1 else 0.0) >= 0:
                    marks.append("not below doing nothing")
            if FLOOR in by_method and verdict.inside_floor(*paired(by_method[row["method"]], by_method[FLOOR])):
                marks.append("inside the retrain floor")
            if row["diverged"]:  # the declared rule: kept in the mean, flagged in every format
                marks.append(f"{int(row['diverged'])} of {int(row['n'])} runs diverged (kept in the mean)")
            table.loc[i, "marks"] = "; ".join(marks)
        tau, first, second, left_out = verdict.kendall_halves(gaps_by_seed(part[~part["reference"]]))
        stats.update(tau=tau, tau_halves=(first, second), tau_left_out=left_out)
    order = {RETRAIN: 0, FLOOR: 1}
    table["rank"] = [order.get(m, 2) for m in table["method"]]
    table = table.sort_values(["rank", "avg_gap_mean"]).reset_index(drop=True)
    table["rank"] = range(len(table))
    return table, stats


def regime_summary(part: pd.DataFrame) -> dict:
    """Mean regime of a setting over its seeds (from the original, retrain and floor rows)."""
    def mean_of(method: str, metric: str) -> float:
        values = part.loc[part["method"] == method, metric].dropna().astype(float)
        return float(values.mean()) if len(values) else math.nan

    forget_acc, retain_acc, ta = 100.0 - mean_of(ORIGINAL, "UA"), mean_of(ORIGINAL, "RA"), mean_of(ORIGINAL, "TA")
    original_gap, floor = mean_of(ORIGINAL, "avg_gap"), mean_of(FLOOR, "avg_gap")
    ratio = original_gap / floor if floor and floor > 0 else (math.inf if floor == 0 else math.nan)
    summary = {"original_forget_acc": forget_acc, "original_retain_acc": retain_acc, "original_TA": ta,
               "original_gen_gap": retain_acc - ta, "original_gap": original_gap, "retrain_floor": floor,
               "gap_over_floor": ratio}
    summary["misses"] = verdict.bar_misses(forget_acc, retain_acc, retain_acc - ta, ratio)
    if math.isnan(floor):
        summary["misses"].append("no retrain floor in these records (no second retrain model)")
    return summary


def regime_text(summary: dict) -> str:
    text = (f"Regime (mean over seeds): original forget acc {summary['original_forget_acc']:.1f}, retain acc "
            f"{summary['original_retain_acc']:.1f}, TA {summary['original_TA']:.1f} (generalisation gap "
            f"{summary['original_gen_gap']:.1f}); doing nothing's Avg Gap {summary['original_gap']:.2f}, retrain "
            f"floor {summary['retrain_floor']:.2f} (ratio {verdict.floor2(summary['gap_over_floor'])}, rounded down).")
    if summary["misses"]:
        return text + " **WARNING: misses the regime bar (docs/statistics.md): " + "; ".join(summary["misses"]) + ".**"
    return text + " Meets the regime bar (docs/statistics.md)."


POOL_LABELS = {RETRAIN: "retrain pool", FLOOR: "held-out retrain pool", ORIGINAL: "original (do nothing)"}
POOL_SHOWN = {"forgetting_quality": "F (ε-score)", "final_score": "final score", "klom_forget": "KLoM D_f",
              "klom_retain": "KLoM D_r", "klom_test": "KLoM T", "klom_forget_p95": "KLoM D_f p95",
              "lira_auc": "LiRA AUC", "lira_tpr_at_1fpr": "TPR @ 1 % FPR", "UA": "UA", "RA": "RA", "TA": "TA",
              "avg_gap": "Avg Gap (pool means)", "RTE": "RTE"}


def pool_comparison(a: pd.DataFrame, b: pd.DataFrame) -> tuple[float, str]:
    """p of a paired two-sided t-test of the final score of two rows: over the forget-set seeds both have
    when there are two or more, else over the forget examples of their one shared forget set."""
    seeds = sorted(set(a["seed"]) & set(b["seed"]))
    if len(seeds) >= 2:
        x, y = (g.set_index("seed").loc[seeds, "final_score"].astype(float).tolist() for g in (a, b))
        return verdict.paired_p(x, y), "seeds"
    if len(seeds) == 1:
        x, y = (g.set_index("seed").loc[seeds[0], "final_points"] for g in (a, b))
        if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
            return verdict.paired_p(x, y), "examples"
    return math.nan, ""


def pool_statistics(part: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """One pool setting: mean ± 95 % interval of every score (t over forget-set seeds; with one seed, F's
    interval over the forget examples), the best method by final score, paired tests against it, against
    the held-out retrain pool and against doing nothing, and how the Avg Gap would rank the same methods."""
    from scipy import stats as scipy_stats

    rows, by_method = [], {m: g for m, g in part.groupby("method", sort=False)}
    for method, g in by_method.items():
        row = {"method": method, "n": g["seed"].nunique(), "diverged": int(g["diverged"].sum()),
               "reference": bool(g["reference"].iloc[0])}
        for metric in [*POOL_METRICS, "UA", "RA", "TA", "MIA", "avg_gap", "RTE"]:
            if metric in g and g[metric].notna().any():
                mean, half, n = verdict.t_interval(g[metric].dropna().astype(float).tolist())
                if n == 1 and metric == "forgetting_quality":
                    half = float(g["forgetting_quality_ci"].dropna().iloc[0]) if g["forgetting_quality_ci"].notna().any() else math.nan
                row.update({f"{metric}_mean": mean, f"{metric}_ci": half})
        rows.append(row)
    table = pd.DataFrame(rows)
    stats = {"best": None, "tests": set(), "tau_gap": math.nan, "disagreements": []}
    methods = table[~table["reference"]].dropna(subset=["final_score_mean"])
    table["p_vs_best"], table["tied_with_best"], table["marks"] = math.nan, False, ""
    if not methods.empty:
        best = methods.sort_values("final_score_mean", ascending=False).iloc[0]["method"]
        stats["best"] = best

        def p_value(a: pd.DataFrame, b: pd.DataFrame) -> float:
            p, over = pool_comparison(a, b)
            stats["tests"].add(over)
            return p

        all_marks = mark_best_and_ties(table, by_method, best, p_value, skip=lambda row: row["method"] == RETRAIN)
        for i, marks in all_marks.items():
            row = table.loc[i]
            if not row["reference"]:
                if FLOOR in by_method:
                    p, _ = pool_comparison(by_method[row["method"]], by_method[FLOOR])
                    below = row["final_score_mean"] < table.loc[table["method"] == FLOOR, "final_score_mean"].iloc[0]
                    marks.append("below the held-out retrain pool" if p < verdict.ALPHA and below
                                 else "tied with the held-out retrain pool" if p >= verdict.ALPHA else "")
                if ORIGINAL in by_method:
                    p, _ = pool_comparison(by_method[row["method"]], by_method[ORIGINAL])
                    if not (p < verdict.ALPHA and row["final_score_mean"] > table.loc[
                            table["method"] == ORIGINAL, "final_score_mean"].iloc[0]):
                        marks.append("not above doing nothing")
            table.loc[i, "marks"] = "; ".join(m for m in marks if m)
        if len(methods) >= 2 and "avg_gap_mean" in methods:
            by_score = methods.set_index("method")["final_score_mean"]
            by_gap = methods.set_index("method")["avg_gap_mean"]
            stats["tau_gap"] = float(scipy_stats.kendalltau(by_score, -by_gap).statistic)
            names = list(by_score.index)
            stats["disagreements"] = [
                (a, b) for j, a in enumerate(names) for b in names[j + 1:]
                if (by_score[a] - by_score[b]) * (by_gap[b] - by_gap[a]) < 0]
    order = {RETRAIN: 0, FLOOR: 1, ORIGINAL: 3}
    table["rank"] = [order.get(m, 2) for m in table["method"]]
    table = table.sort_values(["rank", "final_score_mean"], ascending=[True, False]).reset_index(drop=True)
    table["rank"] = range(len(table))
    return table, stats


def pool_pretty(table: pd.DataFrame) -> pd.DataFrame:
    shown = pd.DataFrame({"method": [POOL_LABELS.get(m, m) for m in table["method"]], "n": table["n"]})
    for metric, label in POOL_SHOWN.items():
        if f"{metric}_mean" in table:
            digits = 1 if metric in ("UA", "RA", "TA", "RTE") else 3
            shown[label] = [cell(a, b, digits) for a, b in zip(table[f"{metric}_mean"], table[f"{metric}_ci"])]
    shown["p vs best"] = ["" if pd.isna(p) else f"{p:.3f}" for p in table["p_vs_best"]]
    shown["marks"] = table["marks"].fillna("")
    if table["diverged"].any():
        shown["diverged"] = table["diverged"]
    return shown


def pool_summary(stats: dict) -> str:
    """The verdict lines under a pool table: the best, what the ties were tested on, and where the pool
    scores and the Avg Gap rank the methods differently."""
    if not stats.get("best"):
        return ""
    described = {"seeds": "a paired two-sided t-test of the final score over the forget-set seeds two rows share",
                 "examples": "where two rows share one forget set only, a paired two-sided t-test of the per-example "
                             "final points over its examples"}
    test = "; ".join(described[t] for t in sorted(stats["tests"]) if t in described) or "no test"
    text = f"Best by final score: **{stats['best']}**; bold: the best and the methods tied with it ({test}, α = {verdict.ALPHA})."
    if not pd.isna(stats["tau_gap"]):
        pairs = ", ".join(f"{a} / {b}" for a, b in stats["disagreements"]) or "none"
        text += (f" Ranking by final score vs by the Avg Gap of the pool means (lower is better): Kendall τ = "
                 f"{stats['tau_gap']:.2f}; pairs ordered differently: {pairs}.")
    return text


POOL_LEGEND = ("Scores against pools of models (docs/pools.md): per forget set, N retrain models (training seeds 0..N−1 "
               "on D_r) and N seeded runs of each method from the one original model. **F** = the NeurIPS 2023 "
               "challenge's forgetting quality (per forget example, ε of the best decision rule telling the method's "
               "pool from the retrain pool, bucketed into 2^−n points; 1 = indistinguishable, 0 = always told apart); "
               "**final score** = F × (RA_u / RA_r) × (TA_u / TA_r), higher is better; **KLoM** = per-example KL "
               "divergence KL(retrain ‖ method) of the margin distributions (mean over D_f, a D_r sample and T; p95 "
               "over D_f; 20 bins, the last one closed unless eval.klom_top_edge=reference; the other direction with "
               "eval.klom_direction=unlearned_first), lower is better; **LiRA AUC / TPR @ 1 % FPR** = a per-example likelihood-ratio attack telling the method's "
               "models from retrained ones (0.5 / 0.01 = indistinguishable). Reference rows: the retrain pool, a "
               "held-out retrain pool scored as if it were a method (the best a method can reach with N models; "
               "KLoM's floor at this N) and doing nothing (the original N times: F = 0). Mean ± 95 % interval: Student "
               "t over the n forget-set seeds; with n = 1, F's interval is over the forget examples and the others "
               "have none. Marks: tied with / below the held-out retrain pool, not above doing nothing (paired tests, "
               "α = 0.05).")


def setting_key(keys: tuple) -> tuple:
    dataset, model, forget, augmentation, variant = keys
    aug = AUG_ORDER.index(augmentation) if augmentation in AUG_ORDER else len(AUG_ORDER)
    return dataset, model, forget_order(forget), aug, augmentation, variant


def aggregate(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The leaderboard table (one row per configuration, settings in numeric order) and per-setting facts."""
    tables, facts = [], {}
    groups = sorted(frame.groupby(GROUP, sort=False), key=lambda kv: setting_key(kv[0]))
    pools = not frame.empty and (frame["task"] == "pool").all()
    for keys, part in groups:
        table, stats = pool_statistics(part) if pools else setting_statistics(part)
        for column, value in zip(GROUP, keys):
            table.insert(GROUP.index(column), column, value)
        tables.append(table)
        if "avg_gap_mean" in table and not pools:
            stats["regime"] = regime_summary(part)
        stats["n_seeds"] = int(part["seed"].nunique())
        if pools:
            stats["pool_size"] = json.loads(part["setting_sig"].iloc[0]).get("eval.pool_size")
        facts[keys] = stats
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    if "avg_gap_mean" not in table:  # generation: no gap to rank by; references first, then methods
        table["order"] = [reference_first(m) for m in table["method"]]
        table = table.sort_values([*GROUP, "order", "method"]).drop(columns="order").reset_index(drop=True)
    return table, facts


def shared_labels(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, str]:
    """Labels of setting b to read as setting a's: where b holds several configurations of a method (each
    labelled by the keys that differ, `ga (bn=train)`) and a holds one (`ga`), the configuration of b
    with a's values of those keys is the same method as a's row."""
    rename = {}
    plain = {base: json.loads(g["method_sig"].iloc[0]) for base, g in a.groupby("method_base")
             if set(g["method"]) == {base}}
    for base, g in b.groupby("method_base"):
        configs = {label: json.loads(rows["method_sig"].iloc[0]) for label, rows in g.groupby("method")}
        if base not in plain or len(configs) < 2:
            continue
        keys = differing(list(configs.values()))
        for label, config in configs.items():
            if all(config.get(k) == plain[base].get(k) for k in keys):
                rename[label] = base
    return rename


def rank_agreement(frame: pd.DataFrame, facts: dict) -> pd.DataFrame:
    """Per dataset / model / augmentation / variant, every pair of its forget settings: Kendall τ between
    their method rankings (mean per-seed Avg Gap; reference rows out) with its 95 % bootstrap interval over
    seeds, beside each setting's τ between two halves of its own seeds (the noise a change must exceed)."""
    rows = []
    within = ["dataset", "model", "augmentation", "variant"]
    for keys, group in frame[~frame["reference"]].dropna(subset=["avg_gap"]).groupby(within, sort=False):
        settings = sorted(group["forget"].unique(), key=forget_order)
        rows_of = {f: group[group["forget"] == f] for f in settings}
        for i, first in enumerate(settings):
            for second in settings[i + 1:]:
                a, b = rows_of[first], rows_of[second]
                found = verdict.kendall_settings(gaps_by_seed(a, shared_labels(b, a)),
                                                 gaps_by_seed(b, shared_labels(a, b)))
                halves = [facts.get((keys[0], keys[1], f, keys[2], keys[3]), {}).get("tau", math.nan)
                          for f in (first, second)]
                rows.append({**dict(zip(within, keys)), "setting_a": first, "setting_b": second,
                             "tau": found["tau"], "tau_low": found["low"], "tau_high": found["high"],
                             "methods": found["methods"], "seeds": found["seeds"],
                             "tau_halves_a": halves[0], "tau_halves_b": halves[1],
                             "left_out": ", ".join(found["left_out"])})
    return pd.DataFrame(rows)


def number(value: float) -> str:
    """A statistic for a Markdown table: two decimals, n/a where it is undefined."""
    return "n/a" if pd.isna(value) else f"{value:.2f}"


TUNED_LABEL = re.compile(r"^(?P<base>.+) \(tuned, (?P<track>[a-z]+)\)$")  # scripts/tune.py's label


def paired_difference(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """Two rows' per-seed Avg Gaps on the seeds both have: n, each row's mean, the mean difference a − b with
    its 95 % t-interval half-width, and p of the paired two-sided t-test."""
    ours, theirs = paired(a, b)
    mean, half, n = verdict.t_interval([x - y for x, y in zip(ours, theirs)])
    return {"n": n, "a_gap": float(pd.Series(ours).mean()) if n else math.nan,
            "b_gap": float(pd.Series(theirs).mean()) if n else math.nan,
            "difference": mean, "difference_ci": half, "p": verdict.paired_p(ours, theirs)}


def relabelled(rows: pd.DataFrame, base: str) -> dict[str, dict[int, float]]:
    """A tuned row's per-seed gaps under its method's name, so its ranking lines up with the default's or
    with the other track's."""
    return gaps_by_seed(rows, {rows["method"].iloc[0]: base})


def p_text(p: float) -> str:
    return number(p) if pd.isna(p) or p >= 0.01 else f"{p:.1e}"


def difference_verdict(p: float, difference: float, closer: str, farther: str) -> str:
    """A paired difference's verdict at α: `closer` when negative and significant, `farther` when positive."""
    if pd.isna(p) or p >= verdict.ALPHA:
        return "no difference"
    return closer if difference < 0 else farther


def track_best(rows: dict[str, pd.DataFrame], labels: list[str]) -> tuple[str, list[str]]:
    """Among one track's tuned rows: the lowest mean per-seed Avg Gap and the rows tied with it (paired
    two-sided t-test, p ≥ α), so a track's own verdict does not hinge on the other track's best row."""
    if not labels:
        return "", []
    best = min(labels, key=lambda label: rows[label]["avg_gap"].astype(float).mean())
    tied = [label for label in labels
            if label != best and verdict.paired_p(*paired(rows[label], rows[best])) >= verdict.ALPHA]
    return best, tied


def tuning_comparison(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tuned rows (`ft (tuned, oracle)`, docs/tuning.md) against their method's default row in the same setting:
    per method and track, the paired per-seed Avg Gap difference tuned − default (mean, 95 % t-interval, p of
    the paired t-test, on the seeds both have); per setting and track, Kendall τ between the zoo's ranking
    with its defaults and with its tuned values (95 % bootstrap interval over seeds), over the methods that
    have both rows. Empty frames when no setting holds a tuned row beside its default."""
    pairs, rankings = [], []
    for keys, part in frame[~frame["reference"]].dropna(subset=["avg_gap"]).groupby(GROUP, sort=False):
        rows = {m: g for m, g in part.groupby("method", sort=False)}
        tuned = {m: TUNED_LABEL.match(m) for m in rows}
        tracks = sorted({found["track"] for found in tuned.values() if found})
        for track in tracks:
            default_gaps, tuned_gaps = {}, {}
            for label, found in tuned.items():
                if not found or found["track"] != track or found["base"] not in rows:
                    continue
                base = found["base"]
                diff = paired_difference(rows[label], rows[base])
                pairs.append({**dict(zip(GROUP, keys)), "method": base, "track": track, "n": diff["n"],
                              "default_gap": diff["b_gap"], "tuned_gap": diff["a_gap"],
                              "difference": diff["difference"], "difference_ci": diff["difference_ci"],
                              "p": diff["p"]})
                default_gaps.update(gaps_by_seed(rows[base]))
                tuned_gaps.update(relabelled(rows[label], base))
            found = verdict.kendall_settings(default_gaps, tuned_gaps)
            best, tied = track_best(rows, [label for label, f in tuned.items() if f and f["track"] == track])
            rankings.append({**dict(zip(GROUP, keys)), "track": track, "tau": found["tau"], "tau_low": found["low"],
                             "tau_high": found["high"], "methods": found["methods"], "seeds": found["seeds"],
                             "best": best, "tied_with_best": "; ".join(tied)})
    return pd.DataFrame(pairs), pd.DataFrame(rankings)


def track_comparison(frame: pd.DataFrame) -> pd.DataFrame:
    """Two tuning tracks of the same methods against each other (docs/tuning.md: does tuning without a retrain model
    choose values as good as tuning on the Avg Gap to it?): per setting, pair of tracks and method with both
    tuned rows, the paired per-seed difference first − second (tracks in alphabetical order, so blind −
    oracle; positive = the first track's values are farther from retrain) with its 95 % t-interval and p;
    plus one row per setting and pair of tracks (method `(ranking)`) with Kendall τ between the two tracks'
    rankings and its bootstrap interval. Empty when no setting holds two tracks."""
    rows_out = []
    for keys, part in frame[~frame["reference"]].dropna(subset=["avg_gap"]).groupby(GROUP, sort=False):
        by_track: dict[str, dict[str, pd.DataFrame]] = {}
        for label, rows in part.groupby("method", sort=False):
            if found := TUNED_LABEL.match(label):
                by_track.setdefault(found["track"], {})[found["base"]] = rows
        tracks = sorted(by_track)
        for i, first in enumerate(tracks):
            for second in tracks[i + 1:]:
                head = {**dict(zip(GROUP, keys)), "first": first, "second": second}
                gaps_first, gaps_second = {}, {}
                for base in (m for m in by_track[first] if m in by_track[second]):
                    diff = paired_difference(by_track[first][base], by_track[second][base])
                    rows_out.append({**head, "method": base, "n": diff["n"], "first_gap": diff["a_gap"],
                                     "second_gap": diff["b_gap"], "difference": diff["difference"],
                                     "difference_ci": diff["difference_ci"], "p": diff["p"],
                                     "tau": math.nan, "tau_low": math.nan, "tau_high": math.nan})
                    gaps_first.update(relabelled(by_track[first][base], base))
                    gaps_second.update(relabelled(by_track[second][base], base))
                found = verdict.kendall_settings(gaps_first, gaps_second)
                rows_out.append({**head, "method": "(ranking)", "n": found["seeds"], "first_gap": math.nan,
                                 "second_gap": math.nan, "difference": math.nan, "difference_ci": math.nan,
                                 "p": math.nan, "tau": found["tau"], "tau_low": found["low"], "tau_high": found["high"]})
    return pd.DataFrame(rows_out)


def track_markdown(tracks: pd.DataFrame) -> str:
    methods = tracks[tracks["method"] != "(ranking)"]
    ranking = tracks[tracks["method"] == "(ranking)"]

    shown = pd.DataFrame({
        "setting": [section_title(keys) for keys in methods[GROUP].itertuples(index=False)],
        "method": methods["method"], "n": methods["n"],
        "tracks": [f"{a} → {b}" for a, b in zip(methods["first"], methods["second"])],
        "first": [number(v) for v in methods["first_gap"]], "second": [number(v) for v in methods["second_gap"]],
        "first − second": [cell(m, h) for m, h in zip(methods["difference"], methods["difference_ci"])],
        "p": [p_text(p) for p in methods["p"]],
        "verdict": [difference_verdict(r.p, r.difference, f"{r.first} closer", f"{r.second} closer")
                    for r in methods.itertuples()]})
    ranked = pd.DataFrame({
        "setting": [section_title(keys) for keys in ranking[GROUP].itertuples(index=False)],
        "tracks": [f"{a} → {b}" for a, b in zip(ranking["first"], ranking["second"])],
        "τ": [number(t) for t in ranking["tau"]],
        "95 % interval": [f"[{number(lo)}, {number(hi)}]" for lo, hi in zip(ranking["tau_low"], ranking["tau_high"])],
        "seeds": ranking["n"]})
    return "\n".join([
        "", "## Tuning track against tuning track", "",
        "Per method tuned on both tracks: the mean per-seed Avg Gap with each track's values on the seeds both rows "
        "have, and their paired difference (mean ± 95 % t-interval; negative = the first track's values are closer "
        f"to retrain) with the paired two-sided t-test (verdict at p < {verdict.ALPHA}); then Kendall τ between the "
        "two tracks' rankings of those methods, 95 % BCa bootstrap interval over seeds.", "",
        shown.to_markdown(index=False), "", ranked.to_markdown(index=False), ""])


def tuning_markdown(pairs: pd.DataFrame, rankings: pd.DataFrame) -> str:
    shown = pd.DataFrame({
        "setting": [section_title(keys) for keys in pairs[GROUP].itertuples(index=False)],
        "method": pairs["method"], "track": pairs["track"], "n": pairs["n"],
        "default": [number(v) for v in pairs["default_gap"]], "tuned": [number(v) for v in pairs["tuned_gap"]],
        "tuned − default": [cell(m, h) for m, h in zip(pairs["difference"], pairs["difference_ci"])],
        "p": [p_text(p) for p in pairs["p"]],
        "verdict": [difference_verdict(r.p, r.difference, "tuned closer", "tuned farther")
                    for r in pairs.itertuples()]})
    ranked = pd.DataFrame({
        "setting": [section_title(keys) for keys in rankings[GROUP].itertuples(index=False)],
        "track": rankings["track"], "τ (default vs tuned)": [number(t) for t in rankings["tau"]],
        "95 % interval": [f"[{number(lo)}, {number(hi)}]" for lo, hi in zip(rankings["tau_low"], rankings["tau_high"])],
        "methods": rankings["methods"], "seeds": rankings["seeds"],
        "best tuned row": rankings["best"], "tied with it": rankings["tied_with_best"].fillna("")})
    return "\n".join([
        "", "## Tuned against default", "",
        "Per method and tuning track: the mean per-seed Avg Gap with the default and with the tuned values on the "
        "seeds both rows have, and their paired difference (mean ± 95 % t-interval; negative = tuning brought it "
        f"closer to retrain) with the paired two-sided t-test (verdict at p < {verdict.ALPHA}).", "",
        shown.to_markdown(index=False), "",
        "Does tuning change the ranking? Kendall τ between the methods' ranking (mean per-seed Avg Gap) with their "
        "defaults and with their tuned values, 95 % BCa bootstrap interval over seeds (a seed is resampled in both "
        "rankings at once); and the track's best tuned row with the track's rows tied with it (paired t-test, "
        f"p ≥ {verdict.ALPHA}).", "", ranked.to_markdown(index=False), ""])


def agreement_markdown(agreement: pd.DataFrame) -> str:
    shown = pd.DataFrame({
        "setting": [" / ".join(map(str, (r.dataset, r.model, r.augmentation, *((r.variant,) if r.variant else ()))))
                    for r in agreement.itertuples()],
        "forget A": agreement["setting_a"], "forget B": agreement["setting_b"],
        "τ (A vs B)": [number(t) for t in agreement["tau"]],
        "95 % interval": [f"[{number(lo)}, {number(hi)}]"
                          for lo, hi in zip(agreement["tau_low"], agreement["tau_high"])],
        "methods": agreement["methods"], "seeds": agreement["seeds"],
        "τ halves A": [number(t) for t in agreement["tau_halves_a"]],
        "τ halves B": [number(t) for t in agreement["tau_halves_b"]],
        "left out": agreement["left_out"]})
    return "\n".join([
        "", "## Ranking across forget settings", "",
        "Kendall τ between the method rankings (mean per-seed Avg Gap, reference rows out) of two forget settings, "
        "over the methods both have and the seeds they share, with a 95 % BCa bootstrap interval over seeds "
        "(scipy.stats.bootstrap, 2,000 resamples; a seed is resampled in both settings at once, since it draws "
        "the same original model there; rough with few seeds). 1 = the same order, 0 = unrelated, −1 = "
        "reversed. τ halves: each setting's τ between two halves of its own seeds, the agreement that seed "
        "noise alone leaves (rankings on half the seeds each, so noisier than the rankings compared here).", "",
        shown.to_markdown(index=False), ""])


def cell(mean: float, half: float, digits: int = 2) -> str:
    if pd.isna(mean):
        return "-"
    return f"{mean:.{digits}f}" + ("" if pd.isna(half) else f" ± {half:.{digits}f}")


def pretty(table: pd.DataFrame) -> pd.DataFrame:
    """The printed columns: mean ± 95 % CI half-width per metric, both gap estimators, the test and marks."""
    shown = table[[c for c in ("method", "n") if c in table]].copy()
    for m in METRICS:
        if f"{m}_mean" in table:
            label = "Avg Gap (per-seed)" if m == "avg_gap" else m
            digits = 3 if m in COMPARISON_METRICS else 2
            shown[label] = [cell(a, b, digits) for a, b in zip(table[f"{m}_mean"], table[f"{m}_ci"])]
            if m == "avg_gap":
                shown["Avg Gap (gap of means)"] = [cell(a, math.nan) for a in table["avg_gap_of_means"]]
    if "p_vs_best" in table:
        shown["p vs best"] = ["" if pd.isna(p) else f"{p:.3f}" for p in table["p_vs_best"]]
        shown["marks"] = table["marks"].fillna("")
    if "diverged" in table and table["diverged"].any():
        shown["diverged"] = table["diverged"]
    return shown


def bold_rows(table: pd.DataFrame) -> list[bool]:
    return list(table["tied_with_best"].fillna(False).astype(bool)) if "tied_with_best" in table else [False] * len(table)


def section_title(keys: tuple) -> str:
    title = " / ".join(str(k) for k in keys[:4])
    return f"{title} [{keys[4]}]" if keys[4] else title


def markdown(table: pd.DataFrame, facts: dict, args: argparse.Namespace, warnings_seen: list[str]) -> str:
    lines = [f"# {args.title}", ""]
    if args.command:
        lines += ["Made by:", "", "```bash", args.command, "```", ""]
    if args.task == "generation":
        lines += ["Mean ± 95 % Student-t interval over n seeds. UA: % of images generated for the forgotten class "
                  "that the evaluation classifier does not classify as it (higher = forgotten); acc_retained: % of "
                  "generated retained-class images classified as their class; FD: Fréchet distance to real "
                  "retained-class images in the classifier's feature space (lower = closer); UA_dimra: UA after the "
                  "DiMRA relearning attack (lower = the class came back); RTE in seconds (retrain: its training); "
                  "original: the model before unlearning (doing nothing).", ""]
    else:
        lines += [POOL_LEGEND if args.task == "pool" else LEGEND, ""]
    if warnings_seen:
        lines += ["Warnings:", ""] + [f"- {w}" for w in warnings_seen] + [""]
    for keys, part in table.groupby(GROUP, sort=False):
        stats = facts.get(keys, {})
        lines += [f"## {section_title(keys)}", ""]
        if "regime" in stats:
            lines += [regime_text(stats["regime"]), ""]
        if stats.get("pool_size"):
            lines += [f"Pool size N = {stats['pool_size']}; n = {stats['n_seeds']} forget set(s).", ""]
        shown = (pool_pretty if args.task == "pool" else pretty)(part.reset_index(drop=True))
        bold = bold_rows(part)
        shown["method"] = [f"**{m}**" if b else m for m, b in zip(shown["method"], bold)]
        lines += [shown.to_markdown(index=False), ""]
        if args.task == "pool":
            lines += [pool_summary(stats), ""]
        elif stats.get("best"):
            first, second = stats["tau_halves"]
            tau = "n/a (fewer than 2 seeds or methods)" if pd.isna(stats["tau"]) else f"{stats['tau']:.2f}"
            lines += [f"Best: **{stats['best']}**; bold: the best and the methods tied with it "
                      f"({verdict.PAIRED_TEST}). Rank stability: Kendall τ between the rankings on two disjoint "
                      f"halves of the seeds ({first} and {second} seeds) = {tau}"
                      + (f"; left out of τ, missing one of those seeds: {', '.join(stats['tau_left_out'])}"
                         if stats.get("tau_left_out") else "") + ".", ""]
    return "\n".join(lines)


LEGEND = ("Lower Avg Gap is better. Every value is the mean ± the half-width of the 95 % Student-t interval over "
          "the n seeds (a seed draws the forget set, trains the reference models and runs the method). Avg Gap = "
          "mean |metric − retrain| over UA, RA, TA, MIA, by two estimators: **per-seed** (the gap of each seed, "
          "then the mean; ranks and tests use it) and **gap of means** (each metric averaged over seeds first, "
          "the papers' estimator). Reference rows: `retrain` (the reference), `retrain floor` (a second retrain "
          "model on the same D_r with another training seed: the gap between two retrains is the noise of "
          "retraining), `original` (doing nothing). Bold: the best method and those tied with it by a paired "
          f"two-sided t-test over seeds (p ≥ {verdict.ALPHA}). Marks: *not below doing nothing* (the 95 % interval "
          "of the paired gap difference to the original does not lie below 0), *inside the retrain floor* (the upper "
          "end of the method's 95 % interval lies at or below that of the retrain floor: its gap stays within the "
          "noise of retraining itself, indistinguishable from retraining at this scale). RTE in seconds; "
          "relearn_FA = forget accuracy after the relearning attack; MIA_latent (where present) = the published "
          "ManiF-SMC attack, an MLP probe on the latent fitted on the original model (share of D_f called "
          "non-member). A value without ± rests on one seed and has no interval. *Tied* means not "
          "distinguishable at this n, not equal. *k of n runs diverged (kept in the mean)*: runs whose loss "
          "became non-finite, scored as they stopped.")


def html_page(table: pd.DataFrame, facts: dict, args: argparse.Namespace, warnings_seen: list[str]) -> str:
    """A standalone page: title, legend, one section per setting with its regime line, bold best and ties."""
    out = ["<!doctype html><html><head><meta charset='utf-8'>", f"<title>{html.escape(args.title)}</title>",
           "<style>body{font-family:sans-serif;max-width:1400px;margin:auto}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}"
           "tr.ref{background:#f3f3f3}.warn{color:#a00}</style></head><body>",
           f"<h1>{html.escape(args.title)}</h1>"]
    if args.command:
        out.append(f"<p>Made by: <code>{html.escape(args.command)}</code></p>")
    legend = {"generation": "Mean ± 95 % Student-t interval over n seeds.", "pool": POOL_LEGEND}.get(args.task, LEGEND)
    out.append(f"<p>{html.escape(legend.replace('**', '').replace('*', ''))}</p>")
    for w in warnings_seen:
        out.append(f"<p class='warn'>Warning: {html.escape(w)}</p>")
    for keys, part in table.groupby(GROUP, sort=False):
        stats = facts.get(keys, {})
        out.append(f"<h2>{html.escape(section_title(keys))}</h2>")
        if "regime" in stats:
            text = regime_text(stats["regime"]).replace("**", "")
            klass = " class='warn'" if stats["regime"]["misses"] else ""
            out.append(f"<p{klass}>{html.escape(text)}</p>")
        shown = (pool_pretty if args.task == "pool" else pretty)(part.reset_index(drop=True))
        bold = bold_rows(part)
        references = list(part["reference"]) if "reference" in part else [False] * len(part)
        out.append("<table><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns) + "</tr>")
        for (_, row), strong, ref in zip(shown.iterrows(), bold, references):
            cells = "".join(f"<td>{'<b>' if strong else ''}{html.escape(str(v))}{'</b>' if strong else ''}</td>"
                            for v in row)
            out.append(f"<tr{' class=ref' if ref else ''}>{cells}</tr>")
        out.append("</table>")
        if args.task == "pool":
            out.append(f"<p>{html.escape(pool_summary(stats).replace('**', ''))}</p>")
        elif stats.get("best"):
            tau = "n/a" if pd.isna(stats["tau"]) else f"{stats['tau']:.2f}"
            out.append(f"<p>Best: <b>{html.escape(stats['best'])}</b>; bold = tied with the best "
                       f"({html.escape(verdict.PAIRED_TEST)}). Kendall τ between two halves of the seeds: {tau}"
                       + (f" (left out, missing a seed: {html.escape(', '.join(stats['tau_left_out']))})"
                          if stats.get("tau_left_out") else "") + ".</p>")
    out.append("</body></html>")
    return "\n".join(out)


def relative_gaps(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Avg Gap of each augmentation relative to `baseline`, per method and forget setting (negative = better)."""
    rows = table[~table["method"].isin([RETRAIN, FLOOR])]
    gaps = rows.pivot_table(index=["dataset", "model", "forget", "method"], columns="augmentation",
                            values="avg_gap_mean")
    if baseline not in gaps:
        return pd.DataFrame()
    order = [a for a in AUG_ORDER if a in gaps] + [a for a in gaps if a not in AUG_ORDER]
    relative = (100.0 * (gaps.sub(gaps[baseline], axis=0)).div(gaps[baseline], axis=0)).round(1)
    return relative[order].reset_index()


def panel_grid(count: int, width: float = 6.0, height: float = 4.5, columns: int = 3):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = max(1, min(columns, count))
    nrows = max(1, -(-count // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.axis("off")
    return plt, fig, list(axes.flat)


def plot(table: pd.DataFrame, path: Path, title: str) -> None:
    """Avg Gap per method (with the do-nothing and floor rows), one panel per forget setting, bars per
    augmentation, error bars = 95 % t-interval; a bar far off the scale is clipped and labelled."""
    import numpy as np

    data = table[table["method"] != RETRAIN]
    panels = sorted(data.groupby(["dataset", "model", "forget", "variant"], sort=False),
                    key=lambda kv: (kv[0][0], kv[0][1], forget_order(kv[0][2]), kv[0][3]))
    bars = max((part["method"].nunique() * part["augmentation"].nunique() for _, part in panels), default=1)
    plt, fig, axes = panel_grid(len(panels), width=max(7.0, 0.28 * bars))  # labels stay apart at any size
    n_max = int(data["n"].max()) if len(data) else 0
    for ax, ((dataset, model, forget, variant), part) in zip(axes, panels):
        methods = list(dict.fromkeys(part.sort_values("rank")["method"]))
        augs = [a for a in AUG_ORDER if a in set(part["augmentation"])] + sorted(
            set(part["augmentation"]) - set(AUG_ORDER))
        means = part.pivot_table(index="method", columns="augmentation", values="avg_gap_mean").reindex(
            index=methods, columns=augs)
        halves = part.pivot_table(index="method", columns="augmentation", values="avg_gap_ci").reindex(
            index=methods, columns=augs).fillna(0.0)
        tops = (means + halves).to_numpy().ravel()
        tops = tops[np.isfinite(tops)]
        cap = None
        if len(tops) > 2 and tops.max() > 3 * np.median(tops):
            cap = 3 * float(np.median(tops))
        width = 0.8 / max(1, len(augs))
        x = np.arange(len(methods))
        for j, aug in enumerate(augs):
            values = means[aug].to_numpy(dtype=float)
            errors = halves[aug].to_numpy(dtype=float)
            shown = np.minimum(values, cap) if cap else values
            upper = np.where(values > (cap or np.inf), 0, errors)
            lower = np.minimum(upper, np.nan_to_num(shown))  # a gap is never negative: the bar stops at 0
            ax.bar(x + (j - (len(augs) - 1) / 2) * width, shown, width, yerr=[lower, upper], capsize=2,
                   label="none (no augmentation)" if aug == "none" else aug)
            if cap:
                for k, value in enumerate(values):
                    if np.isfinite(value) and value > cap:
                        ax.annotate(f"{value:.1f} ↑", (x[k] + (j - (len(augs) - 1) / 2) * width, cap),
                                    ha="center", va="bottom", fontsize=7, rotation=90)
        if cap:
            ax.set_ylim(0, cap * 1.15)
        if len(augs) == 1:  # one pipeline: the two baselines as lines across the panel too
            for name, style in ((ORIGINAL, ":"), (FLOOR, "--")):
                if name in means.index and pd.notna(means.loc[name, augs[0]]):
                    ax.axhline(min(means.loc[name, augs[0]], cap or math.inf), color="grey", linestyle=style,
                               linewidth=1, label=name)
            ax.legend(fontsize=7)
        crowded = len(methods) > 25  # upright labels cannot collide, however long
        ax.set_xticks(x, methods, rotation=90 if crowded else 35, ha="center" if crowded else "right", fontsize=8)
        for label in ax.get_xticklabels():  # the reference rows read as references, not as methods
            if label.get_text() in REFERENCE_ROWS:
                label.set_color("grey")
                label.set_style("italic")
        ax.set_title(f"{dataset} / {model} / {forget}" + (f"\n[{variant}]" if variant else ""), fontsize=9)
        ax.set_ylabel("Avg Gap to retrain (per-seed), lower is better", fontsize=8)
        if len(augs) > 1:
            ax.legend(fontsize=7, title="augmentation", title_fontsize=7)
    fig.suptitle(f"{title}\nerror bars: 95 % Student-t interval over n ≤ {n_max} seeds\n"
                 "original = doing nothing; retrain floor = the gap between two retrains", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_generation(table: pd.DataFrame, path: Path, title: str) -> None:
    """UA before and after DiMRA per method: what the attack brings back."""
    panels = list(table.groupby(["dataset", "model", "forget"]))
    plt, fig, axes = panel_grid(len(panels))
    for ax, ((dataset, model, forget), part) in zip(axes, panels):
        part = part.set_index("method")
        columns = [c for c in ("UA", "UA_dimra") if f"{c}_mean" in part]
        means = part[[f"{c}_mean" for c in columns]].set_axis(columns, axis=1)
        halves = part[[f"{c}_ci" for c in columns]].set_axis(columns, axis=1).fillna(0.0)
        # UA is a percentage: the interval is clipped to [0, 100] (asymmetric error bars, pandas' (columns, 2, rows))
        lower, upper = halves.clip(upper=means.fillna(0.0)), halves.clip(upper=100.0 - means.fillna(0.0))
        errors = [[lower[c].to_numpy(), upper[c].to_numpy()] for c in columns]
        means.plot.bar(ax=ax, yerr=errors, capsize=2, width=0.8)
        for k, (_, values) in enumerate(means.items()):  # a value not measured is no bar, and says so
            for i, value in enumerate(values):
                if pd.isna(value):
                    ax.annotate("not measured", (i + (k - (len(columns) - 1) / 2) * 0.8 / len(columns), 0),
                                ha="center", va="bottom", rotation=90, fontsize=7, color="grey")
        ax.set_title(f"{dataset} / {model} / forget {forget}")
        ax.set_ylabel("UA (%): generated c_f not classified as c_f")
        ax.tick_params(axis="x", rotation=0)
    fig.suptitle(f"{title}\nerror bars: 95 % Student-t interval over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_pool(table: pd.DataFrame, path: Path, title: str) -> None:
    """Final score and F per row (the reference rows in grey), one panel per forget setting."""
    import numpy as np

    panels = list(table.groupby(["dataset", "model", "forget", "variant"], sort=False))
    plt, fig, axes = panel_grid(len(panels), width=7.0)
    for ax, (keys, part) in zip(axes, panels):
        part = part[part["method"] != RETRAIN]
        x = np.arange(len(part))
        for offset, metric, label in ((-0.2, "final_score", "final score"), (0.2, "forgetting_quality", "F")):
            ax.bar(x + offset, part[f"{metric}_mean"], 0.4, yerr=part[f"{metric}_ci"].fillna(0.0), capsize=2,
                   label=label)
        ax.set_xticks(x, [POOL_LABELS.get(m, m) for m in part["method"]], rotation=35, ha="right", fontsize=8)
        for label, ref in zip(ax.get_xticklabels(), part["reference"]):
            if ref:
                label.set_color("grey")
                label.set_style("italic")
        ax.set_title(" / ".join(str(k) for k in keys[:3]) + (f"\n[{keys[3]}]" if keys[3] else ""), fontsize=9)
        ax.set_ylabel("higher is better (1 = indistinguishable from retraining)", fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(f"{title}\nerror bars: 95 % interval (t over forget sets; one forget set: F over its examples)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def missing_grids(frame: pd.DataFrame) -> list[str]:
    """Sample-grid files that the seed-0 records name but that are not on this machine (grids live in the
    run's outputs folder, not in the record): a figure is never drawn with blank panels."""
    seed = frame["seed"].min()
    missing = []
    for _, row in frame[frame["seed"] == seed].iterrows():
        prefix = row["method"] if row["method"] in REFERENCES else "method"
        for name in (prefix, f"{prefix}_dimra"):
            file = row["grids"].get(name)
            if file and not Path(file).is_file():
                missing.append(f"{file} ({Path(row['file']).name})")
    return sorted(set(missing))


def grid_figures(frame: pd.DataFrame, out: Path) -> list[Path]:
    """Per dataset, the seed-0 sample grids (one row per class): original, retrain and each method, each
    before (top) and after (bottom) DiMRA, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    written = []
    seed = frame["seed"].min()
    for (dataset, model, forget), part in frame[frame["seed"] == seed].groupby(["dataset", "model", "forget"]):
        panels = {}
        for _, row in part.iterrows():
            prefix = row["method"] if row["method"] in REFERENCES else "method"  # the record's grid names
            panels.setdefault(row["method"], (row["grids"].get(prefix), row["grids"].get(f"{prefix}_dimra")))
        names = sorted(panels, key=lambda m: (reference_first(m), m))
        fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 7.6), squeeze=False)
        for column, name in enumerate(names):
            for line, (label, file) in enumerate(zip(("", " + DiMRA"), panels[name])):
                ax = axes[line][column]
                ax.axis("off")
                if file and Path(file).is_file():
                    ax.imshow(mpimg.imread(file), cmap="gray")
                    ax.set_title(f"{name}{label}", fontsize=10)
        fig.suptitle(f"{dataset} / {model} / forget {forget}: one row per class (seed {seed})")
        fig.tight_layout()
        path = out / f"grids_{dataset}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def log_wandb(table: pd.DataFrame, title: str, out: Path) -> None:
    """Numbers as numbers (mean, CI half-width and n in their own columns), so the UI can sort and plot."""
    import wandb

    numeric = table.drop(columns=[c for c in table if table[c].dtype == object and c not in (*GROUP, "method",
                                                                                          "marks")])
    import os

    run = wandb.init(project="unlearn-bench", job_type="leaderboard", name=title, reinit=True,
                     mode=os.environ.get("WANDB_MODE", "offline"), dir=str(out))  # offline unless asked
    try:
        run.log({"leaderboard": wandb.Table(dataframe=numeric)})
    finally:
        run.finish()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=Path, nargs="+", default=[Path("records")],
                        help="folders of cell records (default: ./records)")
    parser.add_argument("--out", type=Path, default=Path("leaderboard"), help="output folder")
    parser.add_argument("--dataset", help="keep these datasets (comma-separated), e.g. cifar10")
    parser.add_argument("--model", help="keep these models, e.g. small_cnn,resnet18,timm:vit_tiny_patch16_224")
    parser.add_argument("--augmentation", help="keep these augmentations, e.g. default,trivialaug")
    parser.add_argument("--forget", help="keep these forget settings, e.g. 'random 10%%,class 0'")
    parser.add_argument("--method", help="keep these methods (the reference rows always stay)")
    parser.add_argument("--relative-to", metavar="AUG", help="also write each augmentation's Avg Gap change "
                        "relative to AUG (percent) to relative_gap.md/.csv")
    parser.add_argument("--title", default="unlearn-bench leaderboard")
    parser.add_argument("--command", help="the command that produced the records (quoted in the Markdown)")
    parser.add_argument("--wandb", action="store_true", help="log the table as a wandb.Table")
    parser.add_argument("--task", default="classification", choices=TASKS, help="which records to tabulate")
    parser.add_argument("--grids", action="store_true", help="generation: one figure of sample grids per dataset")
    args = parser.parse_args(argv)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = load_records(args.records)
    seen = [str(w.message) for w in caught]
    for message in seen:
        print(f"warning: {message}", file=sys.stderr)
    if frame.empty:
        print(f"error: no readable records in {', '.join(map(str, args.records))}", file=sys.stderr)
        return 2
    everything = frame
    frame = select(frame, args)
    if frame.empty:
        print(f"error: no record matches the filters; {filter_values(everything, args)}", file=sys.stderr)
        return 2
    if args.grids and args.task == "generation" and (missing := missing_grids(frame)):
        print(f"error: {len(missing)} sample grid(s) of the records are not on this machine, e.g. {missing[0]}; "
              "rerun those cells (force=true) to draw them again, or leave out --grids; nothing was written",
              file=sys.stderr)
        return 2
    table, facts = aggregate(frame)
    noted = [w for w in seen if not w.startswith("skipping")]
    for keys, stats in facts.items():
        if stats.get("regime", {}).get("misses"):
            message = f"{section_title(keys)} misses the regime bar: {'; '.join(stats['regime']['misses'])}"
            print(f"warning: {message}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "leaderboard.csv", index=False)
    (args.out / "leaderboard.html").write_text(html_page(table, facts, args, noted))
    text = markdown(table, facts, args, noted)
    if args.relative_to:
        relative = relative_gaps(table, args.relative_to)
        relative.to_csv(args.out / "relative_gap.csv", index=False)
        text += "\n".join([f"## Avg Gap change relative to `{args.relative_to}` (%; negative = closer to retrain)",
                           "", relative.to_markdown(index=False), ""])
    if args.task == "classification" and "avg_gap" in frame:
        agreement = rank_agreement(frame, facts)
        if not agreement.empty:
            agreement.to_csv(args.out / "rank_agreement.csv", index=False)
            text += agreement_markdown(agreement)
        pairs, rankings = tuning_comparison(frame)
        if not pairs.empty:
            pairs.to_csv(args.out / "tuned_vs_default.csv", index=False)
            rankings.to_csv(args.out / "tuned_ranking.csv", index=False)
            text += tuning_markdown(pairs, rankings)
        tracks = track_comparison(frame)
        if not tracks.empty:
            tracks.to_csv(args.out / "tuned_tracks.csv", index=False)
            text += track_markdown(tracks)
    if args.grids and args.task == "generation":
        figures = grid_figures(frame, args.out)
        text += "\n".join(["## Sample grids", ""] + [f"![{p.stem}]({p.name})" for p in figures] + [""])
    (args.out / "leaderboard.md").write_text(text)
    {"generation": plot_generation, "pool": plot_pool}.get(args.task, plot)(table, args.out / "leaderboard.png", args.title)
    if args.wandb:
        log_wandb(table, args.title, args.out)
    shown = (pool_pretty if args.task == "pool" else pretty)(table)
    for column in reversed(GROUP):
        shown.insert(0, column, table[column])
    print(shown.to_string(index=False))
    print(f"wrote {args.out}/leaderboard.{{md,csv,html,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
