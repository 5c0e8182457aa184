#!/usr/bin/env bash
# Every committed table of results/, regenerated from the committed records:
#   bash scripts/tables.sh [OUT]      (OUT default: results; `make tables`; JOBS=N tables at a time, default 2;
#                                     TABLES="tuned pool" only those)
# Writing to another OUT and comparing with results/ checks that the committed tables are current
# (tests/test_tables.py). The generation table is written without its sample grids (they need the cells'
# output folders; see results/generation/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results}
bin=${BIN:-.venv/bin}
zoo=ft,rl,ga,iu,l1_sparse,boundary_expanding,boundary_shrink,salun,neggrad_plus,scrub,bad_teacher,ssd,fisher,cf_k,eu_k,scar,msg,ct
board="$bin/unlearn-bench-leaderboard"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

salun_table() {
    $board --records results/records --out "$out/salun_table" --dataset cifar10 \
        --forget 'random 10%,random 50%,class 0' --augmentation none --method "retrain,$zoo,unsir" \
        --title "SalUn table at CPU scale (5 seeds)"
    "$bin/python" -m unlearn_bench.report.salun_reference "$out/salun_table/leaderboard.csv" \
        > "$out/salun_table/comparison.md.part"
    mv "$out/salun_table/comparison.md.part" "$out/salun_table/comparison.md"
}
difficulty() {
    $board --records results/records --out "$out/difficulty" --dataset cifar10 \
        --forget 'random n=125,memorization low n=125,memorization high n=125,subpopulation class 0 cluster 0/2' \
        --augmentation none --title "Forget sets of graded difficulty at CPU scale (5 seeds)"
}
generation() {
    $board --task generation --records results/records --out "$out/generation" --title "Diffusion unlearning (CPU scale)"
}
manif() {
    $board --records results/records --out "$out/manif" --dataset mnist --forget 'random n=200' \
        --method "retrain,ga,salun,manif_smc,manif_smc[bezier,away],manif_smc[bezier,toward],manif_smc[blend,away],manif_smc[blend,toward],manif_smc[fixed,away],manif_smc[fixed,toward]" \
        --title "ManiF-SMC at CPU scale: MNIST, 200 forgotten (5 seeds)"
}
pool() {
    $board --task pool --records results/records --out "$out/pool" \
        --title 'Pool scores at CPU scale (CIFAR-10, 1,000 images, N = 16)'
}
tuned() {
    $board --records results/records results/tuned/records --out "$out/tuned" --dataset cifar10 \
        --forget 'random 10%' --augmentation none --method "$zoo" \
        --title "The zoo at its defaults and tuned (docs/tuning.md), CPU scale, random 10 %"
    "$bin/unlearn-bench-tuning-summary" --trial-records results/tuned/trial_records --out "$out/tuned"
}
aug_study() {  # the study at scale=cpu_aug (its complete seeds), then the earlier one at scale=cpu
    $board --records results/aug_study/records --out "$out/aug_study" --dataset cifar10 \
        --forget 'random 10%,random 50%' --relative-to default --complete-seeds \
        --title "Augmentation study at scale=cpu_aug (1,000 CIFAR-10 images, 300 epochs)"
    "$bin/unlearn-bench-aug-study" --records results/aug_study/records --out "$out/aug_study"
    $board --records results/records --out "$out/aug_study/scale_cpu" --dataset cifar10 \
        --method retrain,ft,rl,ga,salun --forget 'random 10%,random 50%' --relative-to default \
        --title "Augmentation study at scale=cpu (2,500 images, 30 epochs)"
}
reference_switches() {  # the reference defaults alone, then beside the earlier behaviour (its own folder)
    local forget='class 0,random n=125,memorization low n=125,memorization high n=125,subpopulation class 0 cluster 0/2'
    $board --records results/reference_switches/records --out "$out/reference_switches/defaults" \
        --dataset cifar10 --forget "$forget" --augmentation none --method retrain,unsir,rum,salun \
        --title "UNSIR and RUM at their reference defaults, with SalUn, on one machine's reference models"
    $board --records results/reference_switches/records results/reference_switches/earlier_records \
        --out "$out/reference_switches" --dataset cifar10 --forget "$forget" --augmentation none \
        --method retrain,unsir,rum,salun \
        --title "Reference defaults beside the suite's earlier behaviour, one machine's reference models"
}

# JOBS tables at a time (each its own folder); a failed one fails the whole run, with its output.
all_tables="salun_table difficulty generation manif pool tuned aug_study reference_switches"
tables=${TABLES:-$all_tables}
for table in $tables; do
    declare -F "$table" >/dev/null || { echo "error: TABLES: '$table' is not a table; accepted: $all_tables" >&2; exit 2; }
done
for table in $tables; do
    while (( $(jobs -rp | wc -l) >= ${JOBS:-2} )); do sleep 0.2; done
    ( "$table" > "$logs/$table.log" 2>&1 || { echo "$table" >> "$logs/failed"; } ) &
done
wait
for table in $tables; do cat "$logs/$table.log"; done
if [[ -s "$logs/failed" ]]; then
    echo "error: scripts/tables.sh: these tables failed: $(tr '\n' ' ' < "$logs/failed")" >&2
    exit 1
fi
