"""RUM (docs/difficulty.md): split D_f into thirds by a per-example memorisation score and unlearn them in sequence,
each third with its own method against the same D_r (kairanzhao/RUM, main_rum.py: nothing on the low
third, fine-tuning on the middle one, SalUn on the high one, in that order). Which method per stratum is
configuration: `low`, `mid`, `high` each a method config (composed from conf/method/) or null for nothing.

`retain` (conf/method/rum.yaml): cumulative (the reference's main_forget.py --sequential: a stage's D_r is D
without the strata reached so far in `order`, this one included, so the mid step still trains on the high
third) or all_forget (D without all of D_f at every stage). `augment`: false (main_rum.py passes --no_aug to
every step: no augmentation in any stage's batches) or true (the cell's augmentation, as other methods).

The score is the memorisation proxy of docs/difficulty.md: 1 − the true-label probability averaged over the
original's training epochs, which the original records while it trains when the method is rum."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from unlearn_bench.checks import boolean, check_choices
from unlearn_bench.context import Context
from unlearn_bench.data import ImageData, Splits
from unlearn_bench.errors import ConfigError, UserError
from unlearn_bench.methods._common import METHODS, check_method
from unlearn_bench.rng import seed_stage

STRATA = ("low", "mid", "high")
RETAIN_MODES = ("cumulative", "all_forget")


def check(cfg: DictConfig) -> None:
    check_choices(cfg, "method", {"retain": RETAIN_MODES})
    boolean("method.augment", cfg.get("augment"))
    if not OmegaConf.is_list(cfg.order):
        raise ConfigError("method.order", cfg.order, "a non-empty ordering of distinct strata from low, mid, high")
    order = list(cfg.order)
    if sorted(order) != sorted(set(order)) or not set(order) <= set(STRATA) or not order:
        raise ConfigError("method.order", order, "a non-empty ordering of distinct strata from low, mid, high")
    for stratum in STRATA:
        sub = cfg.get(stratum)
        if sub is None:
            continue
        if not OmegaConf.is_dict(sub):
            raise ConfigError(f"method.{stratum}", sub, "null or a method config (e.g. /method@high: salun)")
        if stratum not in order:
            raise ConfigError(f"method.{stratum}", sub.get("name"), f"null while {stratum} is not in method.order "
                              "(its method would never run)")
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


def stratum_splits(splits: Splits, positions: torch.Tensor, pending: torch.Tensor | None = None) -> Splits:
    """The same D and T; D_f narrowed to one stratum; D_r = D − D_f plus the forget examples at `pending`
    (positions in D_f of the strata not reached yet, which the reference's cumulative retain set keeps)."""
    device_positions = positions.to(splits.forget.labels.device)
    retain = splits.retain
    if pending is not None and len(pending):
        retain = ImageData.concat(splits.retain, splits.forget.subset(pending.to(splits.forget.labels.device)))
    return Splits(train=splits.train, forget=splits.forget.subset(device_positions), retain=retain,
                  test=splits.test, forget_test=splits.forget_test, forget_index=splits.forget_index[positions],
                  num_classes=splits.num_classes, forget_true_labels=None)


def no_augmentation(images: torch.Tensor) -> torch.Tensor:
    return images


def not_reached(thirds: dict[str, torch.Tensor], reached: list[str]) -> torch.Tensor:
    """Positions in D_f of the strata not reached yet: the cumulative retain set still trains on them."""
    return torch.cat([thirds[s] for s in STRATA if s not in reached] + [torch.empty(0, dtype=torch.long)])


@METHODS.register("rum", check=check, uses=("example_confidence",))
def rum(model, splits: Splits, cfg: DictConfig, ctx: Context):
    confidence = ctx.references.example_confidence
    if confidence is None:
        raise UserError("method=rum needs the original model's per-example confidence, which the original records "
                        "while it trains for a rum cell; this evaluation mode does not provide it")
    scores = 1.0 - torch.tensor(confidence, dtype=torch.float64)[splits.forget_index.cpu()]
    thirds = memorisation_thirds(scores)
    if not cfg.augment:
        ctx = dataclasses.replace(ctx, augment=no_augmentation)  # the same references and report
    done = {}
    order = list(cfg.order)
    for step, stratum in enumerate(order):
        sub = cfg.get(stratum)
        if sub is None or not len(thirds[stratum]):
            continue
        pending = not_reached(thirds, order[:step + 1]) if cfg.retain == "cumulative" else None
        seed_stage(ctx.seed, f"rum-{stratum}")
        model = METHODS.get(sub.name)(model, stratum_splits(splits, thirds[stratum], pending), sub, ctx)
        done[stratum] = sub.name
    ctx.report.diagnostics["rum_steps"] = done
    return model
