#!/usr/bin/env bash
# The GPU figures of results/bench in one run (a few minutes on one H100 or H200):
#   UNLEARN_BENCH_DATA=../shared/data bash scripts/gpu_bench.sh [OUT]     (OUT default: results/bench/gpu)
# (1) the paper recipe: ResNet-18, batch 256, bf16 autocast, channels_last, the conventional pipeline with
#     8 DataLoader workers; seconds per CIFAR-10 epoch for (a) and (b), and (b)/(c) for every augmentation;
# (2) the light CNN of the presets, where launch overhead rather than arithmetic bounds a GPU: (d) with
#     8 models at once, vmap against one CUDA graph for all 8, against the one-model limit (c).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/bench/gpu}
python=${PYTHON:-python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$python -m unlearn_bench.bench.cli --model resnet18 --batch-size 256 --steps 60 --workers 8 --amp --channels-last \
    --models 4 --skip-cell --out "$out/resnet18"
$python -m unlearn_bench.bench.cli --batch-size 128 --steps 200 --workers 8 --amp --channels-last \
    --models 8 --skip-cell --out "$out/small_cnn"
