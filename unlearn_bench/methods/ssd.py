"""Selective Synaptic Dampening: no training. The diagonal importance E[g²] of every weight on D and on
D_f (squared gradients of the mean cross-entropy per batch, averaged over batches); where a weight's
forget importance exceeds α times its importance on D, it is multiplied by min(λ·imp_D / imp_f, 1)
(if-loops/selective-synaptic-dampening, src/ssd.py `ParameterPerturber`, forget_random_strategies.py
`ssd_tuning`)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.batching import batches
from unlearn_bench.checks import check_choices, check_positive
from unlearn_bench.context import Context
from unlearn_bench.data import ImageData, Splits
from unlearn_bench.methods._common import METHODS


def check(cfg: DictConfig) -> None:
    check_positive(cfg, "method", ("alpha", "dampening", "exponent", "batch_size"))
    check_choices(cfg, "method", {"full_order": ("retain_then_forget", "index")})


def importances(model: nn.Module, data: ImageData, batch_size: int, ctx: Context) -> dict[str, torch.Tensor]:
    """Mean over batches of the squared gradient of each batch's mean cross-entropy (eval mode)."""
    model.eval()
    total = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    count = 0
    for x, y in batches(data, batch_size, ctx, augment=False, shuffle=False):
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        for name, p in model.named_parameters():
            if p.grad is not None:
                total[name] += p.grad.detach().pow(2)
        count += 1
    model.zero_grad(set_to_none=True)
    return {name: value / max(count, 1) for name, value in total.items()}


@torch.no_grad()
def dampen(model: nn.Module, imp_all: dict[str, torch.Tensor], imp_forget: dict[str, torch.Tensor],
           alpha: float, dampening: float, exponent: float) -> int:
    """Scale the selected weights in place; returns how many were changed (selected)."""
    selected = 0
    for name, p in model.named_parameters():
        where = imp_forget[name] > imp_all[name] * alpha
        factor = (imp_all[name] * dampening / imp_forget[name]).pow(exponent).clamp(max=1.0)
        p[where] = p[where] * factor[where]
        selected += int(where.sum())
    return selected


@METHODS.register("ssd", check=check)
def ssd(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    check(cfg)
    imp_forget = importances(model, splits.forget, cfg.batch_size, ctx)
    # The reference's full-train loader is D_r then D_f, unshuffled: D_f fills its own final batches, and a
    # batch's squared mean gradient is not the sum of its examples', so the order changes imp_D.
    full = ImageData.concat(splits.retain, splits.forget) if cfg.full_order == "retain_then_forget" else splits.train
    imp_all = importances(model, full, cfg.batch_size, ctx)
    ctx.report.diagnostics["ssd_selected"] = dampen(model, imp_all, imp_forget, cfg.alpha, cfg.dampening, cfg.exponent)
    return model.eval()
