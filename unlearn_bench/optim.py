"""The optimiser and the learning-rate schedules of the training recipes."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from unlearn_bench.errors import ConfigError

SCHEDULERS = ("constant", "multistep", "cosine")


def sgd(params, cfg: DictConfig, weight_decay: float | None = None) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay if weight_decay is None else weight_decay,
                           nesterov=bool(cfg.get("nesterov", False)) and cfg.momentum > 0)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: DictConfig, steps_per_epoch: int):
    """Per-step schedules; MultiStep milestones are fractions of training (the papers' 91/182 and 136/182)."""
    total = max(1, cfg.epochs * steps_per_epoch)
    kind = cfg.get("scheduler", "constant")
    if kind == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if kind == "multistep":
        milestones = [int(round(m * total)) for m in cfg.milestones]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=cfg.gamma)
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total)
    raise ConfigError("train.scheduler", kind, SCHEDULERS)
