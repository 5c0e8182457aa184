"""FT: fine-tune θ_o on D_r only (catastrophic forgetting of D_f)."""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from unlearn_bench.data import Splits
from unlearn_bench.methods._common import METHODS, run_epochs
from unlearn_bench.train import Context, batches


@METHODS.register("ft")
def ft(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    return run_epochs(model, cfg, ctx, "ft", lambda epoch: batches(splits.retain, cfg.batch_size, ctx))
