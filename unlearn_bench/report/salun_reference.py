"""Put the SalUn paper's Avg Gap figures (docs/protocol.md: CIFAR-10, ResNet-18, 10 trials) beside a leaderboard's,
on the paper's estimator: the gap of the means (each metric averaged over seeds first, then |mean − retrain|).

    python -m unlearn_bench.report.salun_reference results/salun_table/leaderboard.csv > results/salun_table/comparison.md
"""

from __future__ import annotations

import sys

import pandas as pd

# docs/protocol.md, main random-forgetting table of the SalUn paper (Avg Gap to Retrain, lower is better).
PAPER_AVG_GAP = {
    "random 10%": {"ft": 3.78, "rl": 7.15, "ga": 4.12, "iu": 4.06, "boundary_expanding": 2.76,
                   "boundary_shrink": 2.67, "l1_sparse": 2.26, "salun": 1.15},
    "random 50%": {"ft": 6.79, "rl": 6.65, "ga": 7.15, "iu": 5.36, "boundary_expanding": 3.72,
                   "boundary_shrink": 8.13, "l1_sparse": 5.72, "salun": 2.65},
}
REFERENCE_ROWS = ("retrain", "retrain floor", "original")


def main(path: str) -> int:
    table = pd.read_csv(path)
    lines = ["# Avg Gap here vs the SalUn paper, on the paper's estimator", "",
             "Paper: CIFAR-10, ResNet-18, 182 epochs, crop + flip, mean of 10 trials; its Avg Gap is the gap of "
             "the means (each metric averaged over trials, then |method − retrain| averaged over UA, RA, TA, "
             "MIA). Here: the CPU scale of this table (see README.md), the same estimator over the n seeds of "
             "the leaderboard, with the per-seed estimator (mean ± 95 % t-interval) beside it. Ranks are among "
             "the approximate methods (1 = smallest gap); `original` (doing nothing) and the retrain floor are "
             "given for scale, not ranked.", ""]
    for forget, paper in PAPER_AVG_GAP.items():
        part = table[table["forget"] == forget].set_index("method")
        if part.empty:
            continue
        methods = [m for m in paper if m in part.index]
        here_rank = part.loc[methods, "avg_gap_of_means"].rank(method="min").astype(int)
        paper_rank = pd.Series({m: paper[m] for m in methods}).rank(method="min").astype(int)
        rows = []
        for method in sorted(methods, key=lambda m: paper[m]):
            ours = part.loc[method]
            rows.append({"method": method, "paper Avg Gap": paper[method], "paper rank": int(paper_rank[method]),
                         "here Avg Gap (gap of means)": round(float(ours["avg_gap_of_means"]), 2),
                         "here rank": int(here_rank[method]),
                         "here Avg Gap (per-seed)": f"{ours['avg_gap_mean']:.2f} ± {ours['avg_gap_ci']:.2f}",
                         "n": int(ours["n"])})
        for name in ("original", "retrain floor"):
            if name in part.index:
                ours = part.loc[name]
                rows.append({"method": name, "paper Avg Gap": "-", "paper rank": "-",
                             "here Avg Gap (gap of means)": round(float(ours["avg_gap_of_means"]), 2),
                             "here rank": "-", "here Avg Gap (per-seed)":
                             f"{ours['avg_gap_mean']:.2f} ± {ours['avg_gap_ci']:.2f}", "n": int(ours["n"])})
        best = part.loc[methods, "avg_gap_of_means"].idxmin()
        lines += [f"## {forget}", "", pd.DataFrame(rows).to_markdown(index=False), "",
                  f"Smallest gap of means here: **{best}** ({part.loc[best, 'avg_gap_of_means']:.2f}); the paper: "
                  f"**salun** ({paper['salun']:.2f}).", ""]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
