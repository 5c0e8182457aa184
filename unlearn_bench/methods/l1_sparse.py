"""l1-sparse: FT on D_r with an added γ_t·‖θ‖₁, γ_t = γ·(1 − t/E) for epoch t = 0..E−1 (the reference
code's `alpha * (1 - epoch / epochs)`): it decays linearly from γ and ends at γ/E, not at 0."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.batching import batches
from unlearn_bench.checks import keys_check, number
from unlearn_bench.context import Context
from unlearn_bench.data import Splits
from unlearn_bench.methods._common import METHODS, run_epochs


def l1_norm(model: nn.Module) -> torch.Tensor:
    return sum(p.abs().sum() for p in model.parameters())


@METHODS.register("l1_sparse", check=keys_check("method", {"gamma": number(0.0)}))
def l1_sparse(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    def loss_fn(net: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int) -> torch.Tensor:
        gamma = cfg.gamma * (1.0 - epoch / cfg.epochs)
        return nn.functional.cross_entropy(net(x), y) + gamma * l1_norm(net)

    return run_epochs(model, cfg, ctx, "l1_sparse", lambda epoch: batches(splits.retain, cfg.batch_size, ctx),
                      loss_fn=loss_fn)
