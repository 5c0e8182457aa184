"""FT: fine-tune θ_o on D_r only (catastrophic forgetting of D_f)."""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from unlearn_bench.batching import batches
from unlearn_bench.context import Context
from unlearn_bench.data import Splits
from unlearn_bench.methods._common import METHODS, run_epochs


@METHODS.register("ft")
def ft(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    return run_epochs(model, cfg, ctx, "ft", lambda epoch: batches(splits.retain, cfg.batch_size, ctx))
