"""Retrain: exact unlearning, the gold standard. The runner trains (or loads) it; its RTE is its training time."""

from __future__ import annotations

import copy

from omegaconf import DictConfig
from torch import nn

from unlearn_bench.context import Context
from unlearn_bench.data import Splits
from unlearn_bench.methods._common import METHODS


@METHODS.register("retrain")
def retrain(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    retrained, meta = ctx.references.retrain
    ctx.report.charged_seconds = meta["train_seconds"]
    return copy.deepcopy(retrained)
