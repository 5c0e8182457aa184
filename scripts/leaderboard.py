#!/usr/bin/env python
"""Aggregate cell records into a leaderboard: mean ± std over seeds, ranked by Avg Gap to retrain.

    python scripts/leaderboard.py --records results/records --out results/salun_table \
        --augmentation default --title "SalUn table (CPU scale)"

Writes leaderboard.md, leaderboard.csv, leaderboard.html and leaderboard.png into --out; with --wandb
also logs the table to W&B (offline unless WANDB_MODE=online). Corrupt or partial records are skipped
with a warning naming the file. The retrain row of every augmentation is always kept: it is the
reference each gap is measured against.

Generation records (task=generation) form their own table with --task generation: UA, accuracy on the
retained classes, Fréchet distance, UA after DiMRA and run time, with the original and retrain rows;
--grids also lays out each dataset's sample grids (seed 0) in one figure.

    python scripts/leaderboard.py --task generation --records results/records --out results/generation --grids
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import pandas as pd

METRICS = ["UA", "RA", "TA", "MIA", "forget_TA", "avg_gap", "RTE", "relearn_FA", "acc_retained", "FD", "UA_dimra"]
TASKS = ("classification", "generation")
REFERENCES = ("original", "retrain")  # rows every record carries besides its method


def reference_first(method: str) -> int:
    """Sort key of the generation table and grids: original, retrain, then the methods."""
    return REFERENCES.index(method) if method in REFERENCES else len(REFERENCES)
GROUP = ["dataset", "model", "forget", "augmentation"]
AUG_ORDER = ["none", "default", "randaugment", "autoaugment", "random_erasing", "trivialaug", "augmix"]  # SPEC §4
REQUIRED = ("config", "metrics", "retrain_metrics", "method")


def forget_label(forget: dict) -> str:
    if forget.get("mode") == "class":
        return f"class {forget.get('class_id')}"
    if forget.get("count") is not None:
        return f"random n={forget['count']}"
    return f"random {100 * float(forget['rate']):g}%"


def load_records(folders: list[Path]) -> pd.DataFrame:
    rows = []
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            try:
                record = json.loads(path.read_text())
                missing = [k for k in REQUIRED if k not in record]
                if missing:
                    raise ValueError(f"missing {', '.join(missing)}")
                cfg = record["config"]
                task = record.get("task", "classification")
                row = {"file": path.name, "task": task, "grids": record.get("grids", {}), "dataset": cfg["dataset"]["name"], "model": cfg["model"]["name"],
                       "augmentation": cfg["augmentation"]["name"], "forget": forget_label(cfg["forget_rate"]),
                       "method": cfg["method"].get("label") or record["method"], "seed": cfg["seed"], "diverged": record.get("diverged", False)}
                row.update({k: record["metrics"].get(k) for k in METRICS})
                rows.append(row)
                # Every record carries its retrain reference: the retrain row exists even when
                # method=retrain itself was not run.
                rows.append({**row, "method": "retrain", "diverged": False,
                             **{k: record["retrain_metrics"].get(k) for k in METRICS}})
                if task == "generation":  # the model before unlearning is part of the generation table
                    rows.append({**row, "method": "original", "diverged": False,
                                 **{k: record["original_metrics"].get(k) for k in METRICS}})
            except (ValueError, KeyError, TypeError, OSError) as err:
                warnings.warn(f"skipping {path}: {err}", stacklevel=1)
    frame = pd.DataFrame(rows)
    return frame.drop_duplicates(subset=[*GROUP, "method", "seed"]) if not frame.empty else frame


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
        frame = frame[frame["method"].isin([*methods, *REFERENCES])]  # the references always stay
    return frame


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds; Avg Gap is the mean of the per-seed gaps (SPEC §1)."""
    metrics = [m for m in METRICS if m in frame and frame[m].notna().any()]
    grouped = frame.groupby([*GROUP, "method"], dropna=False)
    table = grouped[metrics].agg(["mean", "std"])
    table.columns = [f"{m}_{stat}" for m, stat in table.columns]
    table["seeds"] = grouped["seed"].nunique()
    table["diverged"] = grouped["diverged"].sum()
    table = table.reset_index()
    if "avg_gap_mean" not in table:  # generation: no gap to rank by; references first, then methods
        table["rank"] = [reference_first(m) for m in table["method"]]
        return table.sort_values([*GROUP, "rank", "method"]).reset_index(drop=True).drop(columns="rank")
    is_retrain = table["method"] == "retrain"
    # retrain is rank 0 (the reference); the methods rank 1, 2, ... by Avg Gap within their setting
    gap = table["avg_gap_mean"].where(~is_retrain, float("-inf")).fillna(float("inf"))
    table["rank"] = gap.groupby([table[c] for c in GROUP]).rank(method="min").astype(int) - 1
    return table.sort_values([*GROUP, "rank"]).reset_index(drop=True)


def pretty(table: pd.DataFrame) -> pd.DataFrame:
    shown = table[[c for c in (*GROUP, "method", "rank", "seeds") if c in table]].copy()
    for m in METRICS:
        if f"{m}_mean" in table:
            mean, std = table[f"{m}_mean"], table[f"{m}_std"].fillna(0.0)
            shown[m] = [("-" if pd.isna(a) else f"{a:.2f} ± {b:.2f}") for a, b in zip(mean, std)]
    if table["diverged"].any():
        shown["diverged"] = table["diverged"]
    return shown


def relative_gaps(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Avg Gap of each augmentation relative to `baseline`, per method and forget setting (negative = better)."""
    gaps = table[table["method"] != "retrain"].pivot_table(index=["dataset", "model", "forget", "method"],
                                                          columns="augmentation", values="avg_gap_mean")
    if baseline not in gaps:
        return pd.DataFrame()
    order = [a for a in AUG_ORDER if a in gaps] + [a for a in gaps if a not in AUG_ORDER]
    relative = (100.0 * (gaps.sub(gaps[baseline], axis=0)).div(gaps[baseline], axis=0)).round(1)
    return relative[order].reset_index()


def plot(table: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = table[table["method"] != "retrain"]
    panels = list(data.groupby(["dataset", "model", "forget"]))
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(6 * max(1, len(panels)), 4.5), squeeze=False)
    for ax, ((dataset, model, forget), part) in zip(axes[0], panels):
        means = part.pivot_table(index="augmentation", columns="method", values="avg_gap_mean")
        order = [a for a in AUG_ORDER if a in means.index] + [a for a in means.index if a not in AUG_ORDER]
        means = means.reindex(order)
        stds = part.pivot_table(index="augmentation", columns="method", values="avg_gap_std").fillna(0.0)
        means.plot.bar(ax=ax, yerr=stds.reindex_like(means), capsize=2, width=0.8)
        ax.set_title(f"{dataset} / {model} / {forget}")
        ax.set_ylabel("Avg Gap to retrain (lower is better)")
        ax.set_xlabel("augmentation")
        ax.tick_params(axis="x", rotation=30)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_generation(table: pd.DataFrame, path: Path, title: str) -> None:
    """UA before and after DiMRA per method: what the attack brings back."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(table.groupby(["dataset", "model", "forget"]))
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(6 * max(1, len(panels)), 4.5), squeeze=False)
    for ax, ((dataset, model, forget), part) in zip(axes[0], panels):
        part = part.set_index("method")
        columns = [c for c in ("UA", "UA_dimra") if f"{c}_mean" in part]
        means = part[[f"{c}_mean" for c in columns]].set_axis(columns, axis=1)
        stds = part[[f"{c}_std" for c in columns]].set_axis(columns, axis=1).fillna(0.0)
        means.plot.bar(ax=ax, yerr=stds, capsize=2, width=0.8)
        ax.set_title(f"{dataset} / {model} / forget {forget}")
        ax.set_ylabel("UA (%): generated c_f not classified as c_f")
        ax.tick_params(axis="x", rotation=0)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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


def log_wandb(shown: pd.DataFrame, title: str) -> None:
    import wandb

    run = wandb.init(project="unlearn-bench", job_type="leaderboard", name=title, reinit=True)
    try:
        run.log({"leaderboard": wandb.Table(dataframe=shown.astype(str))})
    finally:
        run.finish()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=Path, nargs="+", default=[Path("records")],
                        help="folders of cell records (default: ./records)")
    parser.add_argument("--out", type=Path, default=Path("leaderboard"), help="output folder")
    parser.add_argument("--dataset", help="keep these datasets (comma-separated), e.g. cifar10")
    parser.add_argument("--model", help="keep these models, e.g. small_cnn,resnet18")
    parser.add_argument("--augmentation", help="keep these augmentations, e.g. default,trivialaug")
    parser.add_argument("--forget", help="keep these forget settings, e.g. 'random 10%%,class 0'")
    parser.add_argument("--method", help="keep these methods (retrain is always kept)")
    parser.add_argument("--relative-to", metavar="AUG", help="also write each augmentation's Avg Gap change "
                        "relative to AUG (percent) to relative_gap.md/.csv")
    parser.add_argument("--title", default="unlearn-bench leaderboard")
    parser.add_argument("--command", help="the command that produced the records (quoted in the Markdown)")
    parser.add_argument("--wandb", action="store_true", help="log the table as a wandb.Table")
    parser.add_argument("--task", default="classification", choices=TASKS, help="which records to tabulate")
    parser.add_argument("--grids", action="store_true", help="generation: one figure of sample grids per dataset")
    args = parser.parse_args(argv)

    frame = load_records(args.records)
    if frame.empty:
        print(f"error: no readable records in {', '.join(map(str, args.records))}", file=sys.stderr)
        return 2
    frame = select(frame, args)
    if frame.empty:
        print("error: no record matches the filters", file=sys.stderr)
        return 2
    table = aggregate(frame)
    shown = pretty(table)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "leaderboard.csv", index=False)
    shown.to_html(args.out / "leaderboard.html", index=False)
    lines = [f"# {args.title}", ""]
    if args.command:
        lines += ["Made by:", "", "```bash", args.command, "```", ""]
    if args.task == "generation":
        lines += ["Mean ± std over seeds. UA: % of images generated for the forgotten class that the evaluation "
                  "classifier does not classify as it (higher = forgotten); acc_retained: % of generated "
                  "retained-class images classified as their class; FD: Fréchet distance to real retained-class "
                  "images in the classifier's feature space (lower = closer); UA_dimra: UA after the DiMRA "
                  "relearning attack (lower = the class came back); RTE in seconds (retrain: its training).", ""]
    else:
        lines += ["Mean ± std over seeds; Avg Gap = mean |metric − retrain| over UA, RA, TA, MIA (lower is "
                  "better); rank 0 is the retrain reference; RTE in seconds; relearn_FA = forget accuracy after "
                  "the relearning attack.", ""]
    for keys, part in shown.groupby(GROUP, sort=False):
        lines += [f"## {' / '.join(map(str, keys))}", "", part.drop(columns=GROUP).to_markdown(index=False), ""]
    if args.relative_to:
        relative = relative_gaps(table, args.relative_to)
        relative.to_csv(args.out / "relative_gap.csv", index=False)
        lines += [f"## Avg Gap change relative to `{args.relative_to}` (%; negative = closer to retrain)", "",
                  relative.to_markdown(index=False), ""]
    if args.grids and args.task == "generation":
        figures = grid_figures(frame, args.out)
        lines += ["## Sample grids", ""] + [f"![{p.stem}]({p.name})" for p in figures] + [""]
    (args.out / "leaderboard.md").write_text("\n".join(lines))
    (plot_generation if args.task == "generation" else plot)(table, args.out / "leaderboard.png", args.title)
    if args.wandb:
        log_wandb(shown, args.title)
    print(shown.to_string(index=False))
    print(f"wrote {args.out}/leaderboard.{{md,csv,html,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
