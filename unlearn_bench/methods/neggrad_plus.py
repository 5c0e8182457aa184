"""NegGrad+: descend the cross-entropy of a D_r batch and ascend that of a D_f batch in one step,
α·CE(D_r) − (1 − α)·CE(D_f), over epochs of D_r with D_f cycled beside it (xcadet/deepunlearn,
munl/unlearning/neggradplus.py, after meghdadk/SCRUB's notebook)."""

from __future__ import annotations

import itertools

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.batching import batches
from unlearn_bench.checks import check_choices, number
from unlearn_bench.context import Context
from unlearn_bench.data import Splits
from unlearn_bench.methods._common import (
    METHODS,
    check_bn,
    check_fraction,
    cycle_batches,
    run_epochs,
    stream_generator,
)


def check(cfg: DictConfig) -> None:
    check_bn(cfg)
    check_fraction(cfg, "alpha")
    check_choices(cfg, "method", {"forget_order": ("cached", "reshuffled")})
    number(0.0)("method.init_l2", cfg.init_l2)


@METHODS.register("neggrad_plus", check=check)
def neggrad_plus(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    alpha = float(cfg.alpha)
    start = [p.detach().clone() for p in model.parameters()]
    generator = stream_generator(ctx, "neggrad_plus-forget")
    forget = cycle_batches(splits.forget, cfg.batch_size, ctx, generator)

    def epoch_batches(epoch: int):
        nonlocal forget
        if cfg.forget_order == "cached":  # the reference's itertools.cycle: one shuffled pass, repeated
            forget = itertools.cycle(list(itertools.islice(
                cycle_batches(splits.forget, cfg.batch_size, ctx, generator), -(-len(splits.forget) // cfg.batch_size))))
        for x_r, y_r in batches(splits.retain, cfg.batch_size, ctx):
            # With α = 1 the forget term has no weight: its batch is not drawn, nor seen by batch norm.
            yield (x_r, y_r), (next(forget) if alpha < 1 else None)

    def loss_fn(model: nn.Module, retain, forget_batch, epoch: int) -> torch.Tensor:
        loss = nn.functional.cross_entropy(model(retain[0]), retain[1])
        if cfg.init_l2:  # the reference's weight decay pulls toward θ_o, not toward 0
            loss = loss + cfg.init_l2 / 2 * sum((p - p0).pow(2).sum() for p, p0 in zip(model.parameters(), start))
        loss = alpha * loss
        if forget_batch is not None:
            loss = loss - (1 - alpha) * nn.functional.cross_entropy(model(forget_batch[0]), forget_batch[1])
        return loss

    return run_epochs(model, cfg, ctx, "neggrad_plus", epoch_batches, loss_fn=loss_fn, bn=cfg.bn)
