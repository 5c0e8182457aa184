#!/usr/bin/env python
"""Measure a candidate regime (docs/statistics.md): train the original model of a configuration on D and print its
accuracy on D, its test accuracy and its training time, one JSON line per call.

    python scripts/regime.py scale=cpu                                  # the CPU scale as configured
    python scripts/regime.py scale=cpu augmentation=default model.head_pool=1 train.epochs=60

Every argument is a Hydra override of conf/config.yaml. Nothing is cached or recorded: this is the
measurement behind the choice of `scale=cpu` (README, "The CPU scale"), not a cell of the protocol.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from unlearn_bench.metrics.core import accuracy, logits_on
from unlearn_bench.protocol import prepare
from unlearn_bench.rng import seed_stage
from unlearn_bench.run import CONFIG_DIR
from unlearn_bench.train import fit


def main(overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["logger=none", "progress=false", *overrides])
    cell = prepare(cfg, Path(cfg.paths.cache_dir))
    model = cell.new_model("original")
    seed_stage(cfg.seed, "original-train")
    start = time.perf_counter()
    stats = fit(model, cell.splits.train, cfg.train, cell.ctx, "original")
    seconds = time.perf_counter() - start
    result = {"overrides": overrides, "train_seconds": round(seconds, 1),
              "train_accuracy": round(accuracy(logits_on(model, cell.splits.train, cell.ctx), cell.splits.train.labels), 2),
              "test_accuracy": round(accuracy(logits_on(model, cell.splits.test, cell.ctx), cell.splits.test.labels), 2),
              "final_train_loss": round(stats["final_train_loss"], 4), "threads": cfg.num_threads}
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
