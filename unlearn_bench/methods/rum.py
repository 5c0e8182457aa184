"""RUM (docs/difficulty.md): split D_f into thirds by a per-example memorisation score and unlearn them in sequence,
each third with its own method against the same D_r (kairanzhao/RUM, main_rum.py: nothing on the low
third, fine-tuning on the middle one, SalUn on the high one, in that order). Which method per stratum is
configuration: `low`, `mid`, `high` each a method config (composed from conf/method/) or null for nothing.

The score is the memorisation proxy of docs/difficulty.md: 1 − the true-label probability averaged over the
original's training epochs, which the original records while it trains when the method is rum."""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import DictConfig

from unlearn_bench.context import Context
from unlearn_bench.data import Splits
from unlearn_bench.errors import ConfigError, UserError
from unlearn_bench.methods._common import METHODS, check_method
from unlearn_bench.rng import seed_stage

STRATA = ("low", "mid", "high")


def check(cfg: DictConfig) -> None:
    order = list(cfg.order)
    if sorted(order) != sorted(set(order)) or not set(order) <= set(STRATA) or not order:
        raise ConfigError("method.order", order, "a non-empty ordering of distinct strata from low, mid, high")
    for stratum in STRATA:
        sub = cfg.get(stratum)
        if sub is None:
            continue
        if sub.get("name") == "rum":
            raise ConfigError(f"method.{stratum}.name", "rum", "a method other than rum")
        if sub.get("task", "classification") != "classification":
            raise ConfigError(f"method.{stratum}.name", sub.get("name"), "a classification method")
        check_method(sub)


def memorisation_thirds(scores: torch.Tensor) -> dict[str, torch.Tensor]:
    """Positions in D_f of its low, mid and high thirds by score (array_split sizes when |D_f| % 3 ≠ 0)."""
    order = torch.argsort(scores, stable=True)
    return {name: torch.from_numpy(part).long().sort().values
            for name, part in zip(STRATA, np.array_split(order.numpy(), 3))}


def stratum_splits(splits: Splits, positions: torch.Tensor) -> Splits:
    """The same D, D_r and T; D_f narrowed to one stratum (RUM's sequential mode keeps all of D_f out of D_r)."""
    device_positions = positions.to(splits.forget.labels.device)
    return Splits(train=splits.train, forget=splits.forget.subset(device_positions), retain=splits.retain,
                  test=splits.test, forget_test=splits.forget_test, forget_index=splits.forget_index[positions],
                  num_classes=splits.num_classes, forget_true_labels=None)


@METHODS.register("rum", check=check, uses=("example_confidence",))
def rum(model, splits: Splits, cfg: DictConfig, ctx: Context):
    confidence = ctx.references.example_confidence
    if confidence is None:
        raise UserError("method=rum needs the original model's per-example confidence, which the original records "
                        "while it trains for a rum cell; this evaluation mode does not provide it")
    scores = 1.0 - torch.tensor(confidence, dtype=torch.float64)[splits.forget_index.cpu()]
    thirds = memorisation_thirds(scores)
    done = {}
    for stratum in cfg.order:
        sub = cfg.get(stratum)
        if sub is None or not len(thirds[stratum]):
            continue
        seed_stage(ctx.seed, f"rum-{stratum}")
        model = METHODS.get(sub.name)(model, stratum_splits(splits, thirds[stratum]), sub, ctx)
        done[stratum] = sub.name
    ctx.report.diagnostics["rum_steps"] = done
    return model
