"""retrain_gen: the diffusion model retrained from scratch without the forgotten class (cached)."""

from __future__ import annotations

import copy

from omegaconf import DictConfig
from torch import nn

from unlearn_bench.data import Splits
from unlearn_bench.generation.common import GenContext
from unlearn_bench.methods._common import METHODS


@METHODS.register("retrain_gen")
def retrain_gen(model: nn.Module, splits: Splits, cfg: DictConfig, gctx: GenContext) -> nn.Module:
    retrained, meta = gctx.retrain
    gctx.charged_seconds = meta["train_seconds"]
    return copy.deepcopy(retrained)
