"""CT (Convolution Transpose), a leading entry of the NeurIPS 2023 unlearning challenge as DeepUnlearn
packages it (xcadet/deepunlearn munl/unlearning/kgltop5.py): transpose the spatial axes of every
convolution kernel (weight.swapaxes(2, 3)), which breaks what the filters learned while keeping their
statistics, then fine-tune on D_r with SGD under a cosine schedule stepped per epoch."""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.batching import batches
from unlearn_bench.context import Context
from unlearn_bench.data import Splits
from unlearn_bench.errors import ConfigError
from unlearn_bench.methods._common import METHODS, run_epochs
from unlearn_bench.optim import sgd


@torch.no_grad()
def transpose_kernels(model: nn.Module) -> None:
    """`rotate_weight`: every Conv2d kernel (out, in, h, w) -> (out, in, w, h)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if module.weight.shape[2] != module.weight.shape[3]:
                raise ConfigError("model", name, "square convolution kernels (CT transposes them in place)")
            module.weight.copy_(module.weight.swapaxes(2, 3).contiguous())


@METHODS.register("ct")
def ct(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    transpose_kernels(model)
    optimizer = sgd(model.parameters(), cfg)

    def step_lr(epoch: int) -> None:  # CosineAnnealingLR(T_max=epochs), stepped after each epoch
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * (1 + math.cos(math.pi * epoch / cfg.epochs)) / 2

    return run_epochs(model, cfg, ctx, "ct", lambda epoch: batches(splits.retain, cfg.batch_size, ctx),
                      bn="train", optimizer=optimizer, on_epoch=step_lr)
