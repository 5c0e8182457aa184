"""Aggregate cell records into a leaderboard that a reader can check (docs/statistics.md).

    unlearn-bench-leaderboard --records results/records --out results/salun_table \
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

    unlearn-bench-leaderboard --task generation --records results/records --out results/generation --grids
"""


from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import pandas as pd

from unlearn_bench.errors import ArgumentParser, one_line_errors
from unlearn_bench.report.configurations import configuration_comparison, configuration_markdown
from unlearn_bench.report.formatting import section_title
from unlearn_bench.report.page import html_page
from unlearn_bench.report.plots import (
    grid_figures,
    missing_grids,
    plot,
    plot_generation,
    plot_pool,
    relative_gaps,
)
from unlearn_bench.report.pool_curve import curve_markdown, plot_curve, pool_size_agreement, pool_size_curve
from unlearn_bench.report.pools import pool_pretty
from unlearn_bench.report.records import (
    GROUP,
    TASKS,
    complete_seeds,
    filter_values,
    load_records,
    select,
)
from unlearn_bench.report.render import markdown, pretty
from unlearn_bench.report.tables import aggregate, agreement_markdown, rank_agreement
from unlearn_bench.report.tuning_tables import (
    track_comparison,
    track_markdown,
    tuning_comparison,
    tuning_markdown,
)


def log_wandb(table: pd.DataFrame, title: str, out: Path) -> None:
    """Numbers as numbers (mean, CI half-width and n in their own columns), so the UI can sort and plot."""
    import wandb

    numeric = table.drop(columns=[c for c in table if table[c].dtype == object and c not in (*GROUP, "method",
                                                                                          "marks")])

    run = wandb.init(project="unlearn-bench", job_type="leaderboard", name=title, reinit=True,
                     mode=os.environ.get("WANDB_MODE", "offline"), dir=str(out))  # offline unless asked
    try:
        run.log({"leaderboard": wandb.Table(dataframe=numeric)})
    finally:
        run.finish()


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    parser.add_argument("--complete-seeds", action="store_true",
                        help="tabulate only the seeds that have every configuration and setting of the selected "
                             "records (a grid running seed by seed leaves its partial seed out, named in the table)")
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
    partial: list[str] = []
    if args.complete_seeds:
        frame, partial = complete_seeds(frame)
        if frame.empty:
            print("error: --complete-seeds leaves no seed: no seed has every configuration and setting of the "
                  "selected records; leave out --complete-seeds to tabulate them as they are", file=sys.stderr)
            return 2
    if args.grids and args.task == "generation" and (missing := missing_grids(frame)):
        print(f"error: {len(missing)} sample grid(s) of the records are not on this machine, e.g. {missing[0]}; "
              "rerun those cells (force=true) to draw them again, or leave out --grids; nothing was written",
              file=sys.stderr)
        return 2
    if args.relative_to and args.relative_to not in set(frame["augmentation"]):
        present = ", ".join(sorted(set(frame["augmentation"])))
        print(f"error: --relative-to={args.relative_to!r} is not valid; accepted: an augmentation of the selected "
              f"records ({present}); nothing was written", file=sys.stderr)
        return 2
    table, facts = aggregate(frame)
    noted = [w for w in seen if not w.startswith("skipping")] + partial
    for keys, stats in facts.items():
        if stats.get("regime", {}).get("misses"):
            message = f"{section_title(keys)} misses the regime bar: {'; '.join(stats['regime']['misses'])}"
            print(f"warning: {message}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "leaderboard.csv", index=False)
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
        configurations = configuration_comparison(frame, facts)
        if not configurations.empty:
            configurations.to_csv(args.out / "configurations.csv", index=False)
            text += configuration_markdown(configurations)
        pairs, rankings = tuning_comparison(frame)
        if not pairs.empty:
            pairs.to_csv(args.out / "tuned_vs_default.csv", index=False)
            rankings.to_csv(args.out / "tuned_ranking.csv", index=False)
            text += tuning_markdown(pairs, rankings)
        tracks = track_comparison(frame)
        if not tracks.empty:
            tracks.to_csv(args.out / "tuned_tracks.csv", index=False)
            text += track_markdown(tracks)
    if args.task == "pool" and not (curve := pool_size_curve(frame)).empty:  # records at several pool sizes
        curve.to_csv(args.out / "pool_size_curve.csv", index=False)
        plot_curve(curve, args.out / "pool_size_curve.png", args.title)
        agreement = pool_size_agreement(frame)
        if not agreement.empty:
            agreement.to_csv(args.out / "pool_size_agreement.csv", index=False)
        text += curve_markdown(curve, agreement) + "![pool size curve](pool_size_curve.png)\n"
    if args.grids and args.task == "generation":
        figures = grid_figures(frame, args.out)
        text += "\n".join(["## Sample grids", ""] + [f"![{p.stem}]({p.name})" for p in figures] + [""])
    (args.out / "leaderboard.md").write_text(text)
    figure = args.out / "leaderboard.png"
    if args.task == "classification":
        plot(table, figure, args.title, facts)
    else:
        {"generation": plot_generation, "pool": plot_pool}[args.task](table, figure, args.title)
    (args.out / "leaderboard.html").write_text(html_page(text, args.title, figure))
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
