"""GA: gradient ascent on the cross-entropy of D_f."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.batching import batches
from unlearn_bench.context import Context
from unlearn_bench.data import Splits
from unlearn_bench.methods._common import METHODS, check_bn, run_epochs


def negative_cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int) -> torch.Tensor:
    return -nn.functional.cross_entropy(model(x), y)


@METHODS.register("ga", check=check_bn)
def ga(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    return run_epochs(model, cfg, ctx, "ga", lambda epoch: batches(splits.forget, cfg.batch_size, ctx),
                      loss_fn=negative_cross_entropy, bn=cfg.bn)
