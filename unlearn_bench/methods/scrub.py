"""SCRUB: the student starts as θ_o, the teacher is θ_o frozen. Each epoch (the first `max_steps` of
them) a max pass over D_f raises KL(teacher ‖ student) at temperature T, then a min pass over D_r lowers
γ·CE + α·KL (meghdadk/SCRUB, thirdparty/repdistiller/helper/loops.py `train_distill` and the notebook's
settings; xcadet/deepunlearn munl/unlearning/scrub.py packages the same)."""

from __future__ import annotations

import copy

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.batching import batches
from unlearn_bench.checks import check_choices, check_positive, integer, number
from unlearn_bench.context import Context
from unlearn_bench.data import ImageData, Splits
from unlearn_bench.errors import ConfigError
from unlearn_bench.methods._common import METHODS, check_bn


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """repdistiller's DistillKL: KL(softmax(t/T) ‖ softmax(s/T)) · T², summed over classes, mean over the batch."""
    log_student = nn.functional.log_softmax(student_logits / temperature, dim=1)
    teacher = nn.functional.softmax(teacher_logits / temperature, dim=1)
    return nn.functional.kl_div(log_student, teacher, reduction="sum") * temperature ** 2 / len(student_logits)


def check(cfg: DictConfig) -> None:
    check_bn(cfg)
    check_choices(cfg, "method", {"optimizer": ("adam", "sgd")})
    check_positive(cfg, "method", ("forget_batch_size", "temperature"))
    integer(0)("method.max_steps", cfg.max_steps)
    for key in ("gamma", "kl_weight", "weight_decay", "lr_decay_rate"):
        number(0.0)(f"method.{key}", cfg[key])
    if cfg.optimizer == "adam" and cfg.sgd_momentum is not None:
        raise ConfigError("method.sgd_momentum", cfg.sgd_momentum, "null with method.optimizer=adam (Adam has no momentum)")
    if cfg.optimizer == "sgd":
        number(0.0, 1.0, high_open=True)("method.sgd_momentum", cfg.sgd_momentum)


def distill_pass(student: nn.Module, teacher: nn.Module, data: ImageData, batch_size: int, cfg: DictConfig,
                 ctx: Context, optimizer: torch.optim.Optimizer, direction: str) -> float:
    """One pass of train_distill: `maximize` (loss −KL on D_f) or `minimize` (γ·CE + α·KL on D_r).
    Returns the mean loss; NaN when the loss stopped being finite (the caller marks divergence)."""
    student.train(cfg.bn == "train")
    teacher.eval()
    total, seen = 0.0, 0
    for x, y in batches(data, batch_size, ctx):
        logits = student(x)
        with torch.no_grad():
            target = teacher(x)
        kl = distill_kl(logits, target, cfg.temperature)
        loss = -kl if direction == "maximize" else cfg.gamma * nn.functional.cross_entropy(logits, y) + cfg.kl_weight * kl
        if not torch.isfinite(loss):
            return float("nan")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, seen = total + loss.item() * len(y), seen + len(y)
    return total / max(seen, 1)


def lr_at(epoch: int, cfg: DictConfig) -> float:
    """repdistiller's adjust_learning_rate: × decay rate for each of 50 / 80 / 90 % of the epochs passed."""
    milestones = [int(cfg.epochs * f) for f in (0.5, 0.8, 0.9)]
    return cfg.lr * cfg.lr_decay_rate ** sum(epoch > m for m in milestones)


@METHODS.register("scrub", check=check)
def scrub(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    check_positive(cfg, "method", ("epochs", "lr", "batch_size"))
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    optimizer = (torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
                 if cfg.optimizer == "adam" else
                 torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.sgd_momentum, weight_decay=cfg.weight_decay))
    for epoch in range(1, cfg.epochs + 1):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(epoch, cfg)
        losses = []
        if epoch <= cfg.max_steps:
            losses.append(distill_pass(model, teacher, splits.forget, cfg.forget_batch_size, cfg, ctx, optimizer, "maximize"))
        losses.append(distill_pass(model, teacher, splits.retain, cfg.batch_size, cfg, ctx, optimizer, "minimize"))
        if any(loss != loss for loss in losses):
            ctx.report.diverged = True
            break
    return model.eval()
