"""DiMRA, the relearning attack on diffusion unlearning: fine-tune the unlearned model with the plain
denoising loss on an auxiliary set WITHOUT the forgotten class, then regenerate it."""

from __future__ import annotations

import copy

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.checks import check_choices, check_positive
from unlearn_bench.data import ImageData, Splits
from unlearn_bench.generation.diffusion import Diffusion, image_batches, optimise

AUX_SETS = ("retain", "sample")


def check_dimra(cfg: DictConfig) -> None:
    check_choices(cfg, "attack", {"aux": AUX_SETS})
    check_positive(cfg, "attack", ("steps", "batch_size", "lr") + (("aux_size",) if cfg.aux == "sample" else ()))


def auxiliary_set(splits: Splits, cfg: DictConfig, seed: int) -> ImageData:
    """The attacker's data: all of D_r, or a seeded random sample of it; D_f never enters."""
    check_dimra(cfg)
    if cfg.aux == "retain":
        return splits.retain
    generator = torch.Generator().manual_seed(int(seed))
    index = torch.randperm(len(splits.retain), generator=generator)[: cfg.aux_size]
    return splits.retain.subset(index.to(splits.retain.labels.device))


def dimra(model: nn.Module, splits: Splits, cfg: DictConfig, diffusion: Diffusion, seed: int,
          progress: bool) -> nn.Module:
    attacked = copy.deepcopy(model)
    aux = auxiliary_set(splits, cfg, seed)
    optimise(attacked, cfg.steps, cfg.lr, image_batches(aux, cfg.batch_size, cfg.steps, aux.labels.device),
             lambda x, y: diffusion.denoise_loss(attacked, x, y), "dimra", progress)
    return attacked
