"""The leaderboard's figures: Avg Gap per method and setting, generation and pool panels, sample grids."""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import pandas as pd

from unlearn_bench.report.pools import POOL_LABELS
from unlearn_bench.report.records import (
    AUG_ORDER,
    FLOOR,
    ORIGINAL,
    REFERENCE_ROWS,
    REFERENCES,
    RETRAIN,
    forget_order,
    reference_first,
)


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

    ncols = max(1, min(columns, count, 2 if count == 4 else columns))  # 4 panels: 2 x 2, no empty slot
    nrows = max(1, -(-count // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.axis("off")
    return plt, fig, list(axes.flat)


def clipped_interval(mean, half, top: float):
    """Lower and upper error-bar lengths of a ± `half` interval cut to [0, top], the quantity's range (a score in
    [0, 1], a percentage): asymmetric bars that never cross the range's ends."""
    return half.clip(upper=mean), half.clip(upper=top - mean)


def finish(fig, path: Path, suptitle: str, dpi: int = 110, fontsize: float = 10):
    """Title, lay out, write and close a figure; returns it (tests read its artists)."""
    import matplotlib.pyplot as plt

    fig.suptitle(suptitle, fontsize=fontsize)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return fig


def method_order(data: pd.DataFrame) -> list[str]:
    """One order for every panel: the retrain floor first, then the methods by their rank in the first
    setting that has them (the verdict's order), doing nothing last."""
    order: list[str] = []
    for _, part in data.groupby(["dataset", "model", "forget", "variant"], sort=False):
        first = part[part["augmentation"] == min(part["augmentation"], key=lambda a: (a not in AUG_ORDER, AUG_ORDER.index(a)
                                                                              if a in AUG_ORDER else 0, a))]
        ranked = [*first.sort_values("rank")["method"], *part.sort_values("rank")["method"]]
        order += [m for m in dict.fromkeys(ranked) if m not in order]
    return ([FLOOR] if FLOOR in order else []) + [m for m in order if m not in (FLOOR, ORIGINAL)] + (
        [ORIGINAL] if ORIGINAL in order else [])


def plot(table: pd.DataFrame, path: Path, title: str, facts: dict | None = None):
    """Avg Gap per method (with the do-nothing and floor rows), one panel per forget setting, bars per
    augmentation, error bars = 95 % t-interval cut at 0; the methods in one order across panels (the first
    setting's ranking), the best and the rows not distinguishable from it outlined, a setting that misses
    the regime bar titled in red, a bar far off the scale clipped and labelled inside it. Many methods and
    one pipeline, or labels too long to stand under a bar (wrapped): horizontal bars, so every label has its
    own line."""
    import numpy as np
    from matplotlib.patches import Patch

    facts = facts or {}
    data = table[table["method"] != RETRAIN]
    panels = sorted(data.groupby(["dataset", "model", "forget", "variant"], sort=False),
                    key=lambda kv: (kv[0][0], kv[0][1], forget_order(kv[0][2]), kv[0][3]))
    order = method_order(data)
    augs_all = [a for a in AUG_ORDER if a in set(data["augmentation"])] + sorted(set(data["augmentation"]) - set(AUG_ORDER))
    wrapped = {m: "\n".join(textwrap.wrap(m, 44)) or m for m in order}  # a configuration's label can be long
    lines = max((label.count("\n") + 1 for label in wrapped.values()), default=1)
    horizontal = (len(order) > 25 or lines > 1) and len(augs_all) == 1
    if horizontal:
        plt, fig, axes = panel_grid(len(panels), width=9.0, height=max(4.5, (0.12 * lines + 0.14) * len(order)),
                                    columns=2)
    else:
        bars = len(order) * len(augs_all)
        width = max(7.0, 0.3 * bars)  # labels stay apart at any size
        # a wide panel (many methods x pipelines) takes a row of its own: side by side they would not fit a page
        plt, fig, axes = panel_grid(len(panels), width=width, columns=1 if width > 10 else 3)
    n_max = int(data["n"].max()) if len(data) else 0
    for ax, ((dataset, model, forget, variant), part) in zip(axes, panels):
        methods = [m for m in order if m in set(part["method"])]
        augs = [a for a in augs_all if a in set(part["augmentation"])]
        means = part.pivot_table(index="method", columns="augmentation", values="avg_gap_mean").reindex(
            index=methods, columns=augs)
        halves = part.pivot_table(index="method", columns="augmentation", values="avg_gap_ci").reindex(
            index=methods, columns=augs).fillna(0.0)
        bold = part.assign(tied=part["tied_with_best"].fillna(False).astype(bool)).pivot_table(
            index="method", columns="augmentation", values="tied", aggfunc="max").reindex(
            index=methods, columns=augs).fillna(False).astype(bool)
        tops = (means + halves).to_numpy().ravel()
        tops = tops[np.isfinite(tops)]
        cap = 3 * float(np.median(tops)) if len(tops) > 2 and tops.max() > 3 * np.median(tops) else None
        width = 0.8 / max(1, len(augs))
        x = np.arange(len(methods))
        for j, aug in enumerate(augs):
            values = means[aug].to_numpy(dtype=float)
            errors = halves[aug].to_numpy(dtype=float)
            shown = np.minimum(values, cap) if cap else values
            upper = np.where(values > (cap or np.inf), 0, errors)
            lower = np.minimum(upper, np.nan_to_num(shown))  # a gap is never negative: the bar stops at 0
            position = x + (j - (len(augs) - 1) / 2) * width
            edges = ["black" if b else "none" for b in bold[aug]]
            label = "none (no augmentation)" if aug == "none" else aug
            if horizontal:
                ax.barh(position, shown, width, xerr=[lower, upper], capsize=2, label=label, edgecolor=edges,
                        linewidth=1.5)
            else:
                ax.bar(position, shown, width, yerr=[lower, upper], capsize=2, label=label, edgecolor=edges,
                       linewidth=1.5)
            if cap:
                for k, value in enumerate(values):
                    if np.isfinite(value) and value > cap:  # inside the clipped bar: nothing to collide with
                        where = (cap * 0.97, position[k]) if horizontal else (position[k], cap * 0.97)
                        ax.annotate(f"{value:.1f} ↑", where, ha="right" if horizontal else "center",
                                    va="center" if horizontal else "top", fontsize=7, color="white",
                                    rotation=0 if horizontal else 90)
        (ax.set_xlim if horizontal else ax.set_ylim)(0, (cap or max(tops, default=1.0)) * 1.08)
        if len(augs) == 1:  # one pipeline: the two baselines as lines across the panel too
            for name, style in ((ORIGINAL, ":"), (FLOOR, "--")):
                if name in means.index and pd.notna(means.loc[name, augs[0]]):
                    level = min(means.loc[name, augs[0]], cap or math.inf)
                    (ax.axvline if horizontal else ax.axhline)(level, color="grey", linestyle=style, linewidth=1,
                                                               label=name)
        handles, labels = ax.get_legend_handles_labels()
        handles.append(Patch(facecolor="white", edgecolor="black", linewidth=1.5))
        labels.append("outlined: best, or not distinguishable from it")
        if len(augs) > 1:  # the pipelines' legend beside the panel, off the bars
            ax.legend(handles, labels, fontsize=7, title="augmentation", title_fontsize=7, loc="upper left",
                      bbox_to_anchor=(1.0, 1.0))
        elif ax is axes[0]:  # one pipeline: one legend for the figure, under it
            fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=len(labels), frameon=False)
        if horizontal:
            ax.set_yticks(x, [wrapped[m] for m in methods], fontsize=8)
            ax.invert_yaxis()
            ax.set_xlabel("Avg Gap to retrain (per-seed), lower is better", fontsize=8)
            ticks = ax.get_yticklabels()
        else:
            crowded = len(methods) * len(augs) > 25  # upright labels cannot collide, however long
            ax.set_xticks(x, methods, rotation=90 if crowded else 35, ha="center" if crowded else "right",
                          fontsize=8)
            ax.set_ylabel("Avg Gap to retrain (per-seed), lower is better", fontsize=8)
            ticks = ax.get_xticklabels()
        for label in ticks:  # the reference rows read as references, not as methods
            if label.get_text() in REFERENCE_ROWS:
                label.set_color("grey")
                label.set_style("italic")
        misses = [f for keys, f in facts.items() if keys[:3] == (dataset, model, forget) and keys[4] == variant
                  and keys[3] in augs and f.get("regime", {}).get("misses")]
        heading = f"{dataset} / {model} / {forget}" + (f" [{variant}]" if variant else "")
        if misses:
            ax.set_title(heading + f"\nmisses the regime bar ({len(misses)} of {len(augs)} pipelines)", fontsize=9,
                         color="#a00")
        else:
            ax.set_title(heading, fontsize=9)
    fig.suptitle(f"{title}\nerror bars: 95 % Student-t interval over n ≤ {n_max} seeds, cut at 0 (a gap is never negative)\n"
                 "original = doing nothing; retrain floor = the gap between two retrains", fontsize=10)
    fig.tight_layout(rect=(0, 0.04 if len(augs_all) == 1 else 0, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


def plot_generation(table: pd.DataFrame, path: Path, title: str):
    """UA before and after DiMRA per method: what the attack brings back."""
    panels = list(table.groupby(["dataset", "model", "forget"]))
    plt, fig, axes = panel_grid(len(panels))
    for ax, ((dataset, model, forget), part) in zip(axes, panels):
        part = part.set_index("method")
        columns = [c for c in ("UA", "UA_dimra") if f"{c}_mean" in part]
        means = part[[f"{c}_mean" for c in columns]].set_axis(columns, axis=1)
        halves = part[[f"{c}_ci" for c in columns]].set_axis(columns, axis=1).fillna(0.0)
        # UA is a percentage: the interval is clipped to [0, 100] (asymmetric error bars, pandas' (columns, 2, rows))
        lower, upper = clipped_interval(means.fillna(0.0), halves, 100.0)
        errors = [[lower[c].to_numpy(), upper[c].to_numpy()] for c in columns]
        means.plot.bar(ax=ax, yerr=errors, capsize=2, width=0.8)
        for k, (_, values) in enumerate(means.items()):  # a value not measured is no bar, and says so
            for i, value in enumerate(values):
                if pd.isna(value):
                    ax.annotate("not measured", (i + (k - (len(columns) - 1) / 2) * 0.8 / len(columns), 0),
                                ha="center", va="bottom", rotation=90, fontsize=7, color="grey")
        for name, style in ((ORIGINAL, ":"), (RETRAIN, "--")):  # the two references as levels across the panel
            if name in means.index and "UA" in means and pd.notna(means.loc[name, "UA"]):
                ax.axhline(means.loc[name, "UA"], color="grey", linestyle=style, linewidth=1,
                           label=f"{name} UA" + (" (doing nothing)" if name == ORIGINAL else ""))
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4, frameon=False)  # off the bars
        ax.set_title(f"{dataset} / {model} / forget {forget}")
        ax.set_ylabel("UA (%): generated c_f not classified as c_f")
        ax.tick_params(axis="x", rotation=0)
    return finish(fig, path, f"{title}\nerror bars: 95 % Student-t interval over seeds", dpi=120, fontsize=12)


def pool_size_of(variant: str) -> float:
    """The N of a pool setting's variant label (`eval.pool_size=16`), for ordering panels by N, not as text."""
    match = re.search(r"eval\.pool_size=(\d+)", variant or "")
    return float(match.group(1)) if match else math.inf


def plot_pool(table: pd.DataFrame, path: Path, title: str):
    """Final score and F per row (the reference rows in grey italics, the best and the rows not
    distinguishable from it in bold), one panel per forget setting in order of pool size; intervals cut to
    [0, 1], the range of both scores."""
    import numpy as np

    panels = sorted(table.groupby(["dataset", "model", "forget", "variant"], sort=False),
                    key=lambda item: (*map(str, item[0][:3]), pool_size_of(str(item[0][3]))))
    plt, fig, axes = panel_grid(len(panels), width=7.0)
    for ax, (keys, part) in zip(axes, panels):
        part = part[part["method"] != RETRAIN]
        x = np.arange(len(part))
        for offset, metric, label in ((-0.2, "final_score", "final score"), (0.2, "forgetting_quality", "F")):
            mean, half = part[f"{metric}_mean"].fillna(0.0), part[f"{metric}_ci"].fillna(0.0)
            bars = [side.to_numpy() for side in clipped_interval(mean, half, 1.0)]
            ax.bar(x + offset, mean, 0.4, yerr=bars, capsize=2, label=label)
        crowded = len(part) > 6  # slanted labels of many bars overlap: stand them upright
        ax.set_xticks(x, [POOL_LABELS.get(m, m) for m in part["method"]], rotation=90 if crowded else 35,
                      ha="center" if crowded else "right", fontsize=8)
        tied = part["tied_with_best"].fillna(False).astype(bool) if "tied_with_best" in part else [False] * len(part)
        for label, ref, bold in zip(ax.get_xticklabels(), part["reference"], tied):
            if ref:
                label.set_color("grey")
                label.set_style("italic")
            elif bold:
                label.set_fontweight("bold")
        ax.set_title(" / ".join(str(k) for k in keys[:3]) + (f"\n[{keys[3]}]" if keys[3] else "")
                     + f", n = {int(part['n'].max())} forget set(s)", fontsize=9)
        ax.set_ylabel("higher is better (1 = indistinguishable from retraining)", fontsize=8)
        ax.legend(fontsize=7)
    return finish(fig, path, f"{title}\nerror bars: 95 % interval (t over forget sets; one forget set: F over its "
                  "examples), cut to [0, 1]; bold: the best and the rows not distinguishable from it")


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
        classes = part["grid_classes"].dropna()
        rows = int(classes.iloc[0]) if len(classes) else 0  # records made before it was stored: no row labels
        fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 7.6), squeeze=False)
        for column, name in enumerate(names):
            for line, (label, file) in enumerate(zip(("", " + DiMRA"), panels[name])):
                ax = axes[line][column]
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
                if file and Path(file).is_file():
                    image = mpimg.imread(file)
                    ax.imshow(image, cmap="gray")
                    ax.set_title(f"{name}{label}", fontsize=10)
                    if rows and column == 0:  # the class of each row, on the first column
                        height = image.shape[0]
                        ax.set_yticks([(i + 0.5) * height / rows for i in range(rows)],
                                      [f"class {i}" for i in range(rows)], fontsize=8)
                else:
                    ax.axis("off")
        fig.suptitle(f"{dataset} / {model} / forget {forget}: one row per class (seed {seed})")
        fig.tight_layout()
        path = out / f"grids_{dataset}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written



def plot_combinations(table: pd.DataFrame, path: Path, title: str, pipelines: tuple[str, ...]):
    """The augmentation study's question as one figure: per rate, a grid of methods × pipelines coloured by the
    mean per-seed Avg Gap to the pipeline's own retrain model (darker = closer), the value in each cell, the
    best framed thick and the combinations not distinguishable from it framed thin; methods ordered by their
    mean gap over the pipelines, the same order in every panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    rates = sorted(table["rate"].unique())
    order = list(table.groupby("method")["gap"].mean().sort_values().index)
    augs = [a for a in pipelines if a in set(table["augmentation"])]
    fig, axes = plt.subplots(1, len(rates), figsize=(8.0 * len(rates), 1.0 + 0.7 * len(order)), squeeze=False)
    top = float(table["gap"].max())
    for ax, rate in zip(axes[0], rates):
        part = table[table["rate"] == rate].set_index(["method", "augmentation"])
        grid = part["gap"].unstack().reindex(index=order, columns=augs)
        image = ax.imshow(grid.to_numpy(dtype=float), cmap="viridis", vmin=0.0, vmax=top, aspect="auto")
        for r, method in enumerate(order):
            for c, aug in enumerate(augs):
                if (method, aug) not in part.index:
                    continue
                row = part.loc[(method, aug)]
                value = float(row["gap"])
                ax.text(c, r, f"{value:.1f}", ha="center", va="center", fontsize=8,
                        color="white" if value < 0.6 * top else "black",
                        fontweight="bold" if bool(row["best"]) else "normal")
                if bool(row["tied_with_best"]):
                    ax.add_patch(Rectangle((c - 0.42, r - 0.38), 0.84, 0.76, fill=False, edgecolor="red",
                                           linewidth=3.0 if bool(row["best"]) else 1.2))  # inset: frames stay apart
        ax.set_xticks(range(len(augs)), augs, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(order)), order, fontsize=8)
        best = part[part["best"]]
        verdict_text = (f"best: {best.index[0][0]} with {best.index[0][1]}" if len(best) else
                        "no best (the lowest is not below its doing nothing)")
        ax.set_title(f"{rate}, n = {int(part['n'].max())} seeds; {verdict_text}", fontsize=9)
        fig.colorbar(image, ax=ax, label="Avg Gap to the pipeline's retrain model (lower is better)")
    return finish(fig, path, f"{title}\nred frames: the best (thick) and the combinations not distinguishable from "
                  "it after Holm's correction over the rate's combinations (thin)")
