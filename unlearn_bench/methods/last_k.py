"""CF-k and EU-k: fine-tune only the last k blocks and the classifier on D_r (CF-k, catastrophic
forgetting of the rest), or first re-initialise them (EU-k, exact unlearning of the last k) — every
other weight stays bit-identical (xcadet/deepunlearn munl/unlearning/catastrophic_forgetting_k.py,
exact_unlearning_k.py and scrub_utils.py `fk_finetune`, after meghdadk/SCRUB's notebook)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.batching import batches
from unlearn_bench.checks import integer, number
from unlearn_bench.context import Context
from unlearn_bench.data import Splits
from unlearn_bench.methods._common import METHODS, check_bn, run_epochs
from unlearn_bench.models.factory import model_blocks
from unlearn_bench.rng import seed_stage


def check(cfg: DictConfig) -> None:
    check_bn(cfg)
    integer(1)("method.k", cfg.k)
    number(0.0)("method.init_l2", cfg.init_l2)
    number(0.0, 1.0, low_open=True)("method.lr_decay_rate", cfg.lr_decay_rate)


def last_k(model: nn.Module, k: int) -> list[nn.Module]:
    """The last k blocks and the classifier (the reference unfreezes both)."""
    blocks = model_blocks(model)
    body, classifier = blocks[:-1], blocks[-1]
    if k > len(body):
        from unlearn_bench.errors import ConfigError

        raise ConfigError("method.k", k, f"an integer in [1, {len(body)}] (this model has {len(body)} blocks "
                                         "before its classifier)")
    return [*body[len(body) - k:], classifier]


def reinitialise(module: nn.Module) -> None:
    """deepunlearn's init_weights: Kaiming-uniform (fan_out, ReLU) convolutions, Xavier-uniform linear
    layers, zero biases, batch-norm weight 1 and bias 0 (its running statistics are left as they were)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)


def finetune_last_k(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context, reset: bool) -> nn.Module:
    trainable = last_k(model, cfg.k)
    if reset:
        seed_stage(ctx.seed, f"{cfg.name}-reinit")
        for module in trainable:
            reinitialise(module)
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for module in trainable for p in module.parameters()]
    for p in params:
        p.requires_grad_(True)
    start = [p.detach().clone() for p in params]
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    milestones = [int(cfg.epochs * f) for f in (0.5, 0.8, 0.9)]

    def step_lr(epoch: int) -> None:  # repdistiller's adjust_learning_rate, as fk_finetune calls it
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * cfg.lr_decay_rate ** sum(epoch > m for m in milestones)

    def loss_fn(model: nn.Module, x, y, epoch: int) -> torch.Tensor:
        loss = nn.functional.cross_entropy(model(x), y)
        if cfg.init_l2:  # the reference's weight decay: an L2 pull toward the starting weights
            loss = loss + cfg.init_l2 / 2 * sum((p - p0).pow(2).sum() for p, p0 in zip(params, start))
        return loss

    try:
        return run_epochs(model, cfg, ctx, cfg.name, lambda epoch: batches(splits.retain, cfg.batch_size, ctx),
                          loss_fn=loss_fn, bn=cfg.bn, optimizer=optimizer, on_epoch=step_lr)
    finally:
        for p in model.parameters():
            p.requires_grad_(True)


def check_cell(cfg: DictConfig) -> None:
    """k must leave blocks to freeze in this model: known before anything trains."""
    from unlearn_bench.models import build_model

    last_k(build_model(cfg.model, cfg.dataset.channels, cfg.dataset.num_classes, cfg.dataset.image_size),
           cfg.method.k)


@METHODS.register("cf_k", check=check, check_cell=check_cell)
def cf_k(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    return finetune_last_k(model, splits, cfg, ctx, reset=False)


@METHODS.register("eu_k", check=check, check_cell=check_cell)
def eu_k(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    return finetune_last_k(model, splits, cfg, ctx, reset=True)
