#!/usr/bin/env python
"""How many forget examples of a committed pool the old logit-scaled confidence saturated.

Before the fix, Σ_{j≠y} p_j was taken as Σ p − p_y, which cancels to 0 once s passes about 36: s then read
log 1e45 ≈ 103.6 whatever the model's true confidence. This reads every pool member's cached logits on D_f
(the pool evaluation must have run with the same overrides and cache) and counts, per pool, the (model,
example) pairs and the examples whose s the old arithmetic changed, and the examples whose whole pool it
made constant (ε = 50, no points).

    python scripts/pool_saturation.py eval=pool scale=cpu dataset.train_size=1000 eval.pool_size=16 \\
        forget_rate=random_10 method=ft,rl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from unlearn_bench.cache import ModelCache
from unlearn_bench.evaluation.pool import load_logits, member_key
from unlearn_bench.metrics.core import model_outputs
from unlearn_bench.metrics.pool import logit_scaled_confidence
from unlearn_bench.protocol import prepare, reference_models

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def cancelled_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The old arithmetic: wrong-class mass as Σ p − p_y."""
    logits = np.asarray(logits, dtype=np.float64)
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    index = np.broadcast_to(labels[..., None], probs.shape[:-1] + (1,))
    correct = np.take_along_axis(probs, index, axis=-1)[..., 0]
    return np.log(correct + 1e-45) - np.log(np.clip(probs.sum(axis=-1) - correct, 0.0, None) + 1e-45)


def main(overrides: list[str]) -> list[dict]:
    methods = next((o.split("=", 1)[1].split(",") for o in overrides if o.startswith("method=")), [])
    rest = [o for o in overrides if not o.startswith("method=")]
    rows = []
    for method in methods:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("config", overrides=["logger=none", "progress=false", *rest, f"method={method}"])
        cache = ModelCache(Path(cfg.paths.cache_dir))
        cell = prepare(cfg, cache.root)
        labels = cell.splits.forget.labels.cpu().numpy()
        roles = ("original", "retrain", "held_out", "method") if not rows else ("method",)
        for role in roles:
            logits = []
            if role == "original":  # doing nothing: the original model N times
                models, _ = reference_models(cell, cache, stages=("original",), announce=False)
                logits = [model_outputs(models["original"], cell.splits, cell.ctx).forget.numpy()]
            for index in range(int(cfg.eval.pool_size) if role != "original" else 0):
                folder = cache.computed_folder(f"pool-{role}", member_key(cell, cache, role, index))
                if not (folder / "logits.npz").is_file():
                    raise SystemExit(f"error: pool member {role} {index} of {method} is not in {cache.root}; "
                                     "run the pool evaluation with these overrides first")
                logits.append(load_logits(folder)["forget"])
            logits = np.stack(logits)
            fixed, old = logit_scaled_confidence(logits, labels), cancelled_confidence(logits, labels)
            changed = np.abs(fixed - old) > 1e-6
            constant = np.ptp(old, axis=0) == 0 if len(logits) > 1 else old[0] > 100  # doing nothing: one model
            rows.append({"forget_rate": cfg.forget_rate.mode, "pool": role if role != "method" else method,
                         "models": int(len(logits)), "examples": int(len(labels)),
                         "pairs_changed": int(changed.sum()), "examples_changed": int(changed.any(axis=0).sum()),
                         "examples_made_constant": int((constant & changed.any(axis=0)).sum()),
                         "largest_true_s": float(fixed.max())})
            print(json.dumps(rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
