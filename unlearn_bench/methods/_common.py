"""The epoch loop the gradient-based methods share, and SalUn's masked update."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping

import torch
from omegaconf import DictConfig
from torch import nn
from tqdm.auto import tqdm

from unlearn_bench.checks import check_choices, check_positive, number
from unlearn_bench.context import Context
from unlearn_bench.errors import ConfigError
from unlearn_bench.masks import Mask
from unlearn_bench.optim import sgd
from unlearn_bench.registry import Registry
from unlearn_bench.rng import derive_seed

METHODS: Registry = Registry("method")

EpochBatches = Callable[[int], Iterator[tuple[torch.Tensor, torch.Tensor]]]
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, int], torch.Tensor]


def check_method(cfg: DictConfig) -> Callable:
    """The method's function, after its budget keys (where it has them) and its own switches passed their
    checks: run before the reference models train, so a typo costs a second, not the training."""
    check_positive(cfg, "method", tuple(k for k in ("epochs", "steps", "lr", "batch_size") if k in cfg))
    introduced = cfg.get("introduced") or {}
    unknown = [k for k in introduced if k not in cfg]
    if not isinstance(introduced, Mapping) or unknown:
        raise ConfigError("method.introduced", dict(introduced) if isinstance(introduced, Mapping) else introduced,
                          f"a mapping of {cfg.name}'s own keys to the value earlier records ran with")
    return METHODS.check(cfg.name, cfg)


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int) -> torch.Tensor:
    return nn.functional.cross_entropy(model(x), y)


def masked_decay_step(model: nn.Module, optimizer: torch.optim.Optimizer, mask: Mask, weight_decay: float) -> None:
    """Weight decay folded into the gradient, then the mask applied: a masked-out weight then gets a zero
    gradient, a zero momentum buffer and no decay, so it stays bit-identical (the optimizer has wd=0)."""
    for name, param in model.named_parameters():
        if param.grad is not None:
            if weight_decay:
                param.grad.add_(param.detach(), alpha=weight_decay)
            param.grad.mul_(mask[name])
    optimizer.step()


def masked_gradient_step(model: nn.Module, optimizer: torch.optim.Optimizer, mask: Mask) -> None:
    """The mask multiplies the gradient only (RUM's unlearn/RL.py): the optimizer's weight decay and momentum
    still move a masked-out weight."""
    for name, param in model.named_parameters():
        if param.grad is not None:
            param.grad.mul_(mask[name])
    optimizer.step()


MASK_UPDATES = ("hold", "gradient")


def run_epochs(model: nn.Module, cfg: DictConfig, ctx: Context, desc: str, epoch_batches: EpochBatches,
               loss_fn: LossFn = cross_entropy, mask: Mask | None = None, bn: str = "train",
               optimizer: torch.optim.Optimizer | None = None,
               on_epoch: Callable[[int], None] | None = None, mask_update: str = "hold") -> nn.Module:
    """SGD (or `optimizer`) over `cfg.epochs` epochs of `epoch_batches(epoch)`. `bn`: train re-estimates
    batch-norm statistics on the batches, eval keeps the original's (and disables dropout); `on_epoch(e)`
    runs before epoch e (learning-rate steps). `mask_update`: hold (a masked-out weight stays bit-identical)
    or gradient (the mask multiplies the gradient only). A non-finite loss stops the method and marks the cell as
    diverged; its metrics are still recorded."""
    check_positive(cfg, "method", ("epochs", "lr", "batch_size"))
    model.train(bn == "train")
    hold = mask is not None and mask_update == "hold"
    optimizer = optimizer or sgd(model.parameters(), cfg, weight_decay=0.0 if hold else None)
    for epoch in tqdm(range(cfg.epochs), desc=desc, disable=not ctx.progress, leave=False):
        if on_epoch is not None:
            on_epoch(epoch)
        for x, y in epoch_batches(epoch):
            loss = loss_fn(model, x, y, epoch)
            if not math.isfinite(loss.item()):
                ctx.report.diverged = True
                model.eval()
                return model
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if mask is None:
                optimizer.step()
            elif hold:
                masked_decay_step(model, optimizer, mask, cfg.weight_decay)
            else:
                masked_gradient_step(model, optimizer, mask)
    model.eval()
    return model


BN_MODES = ("train", "eval")


def check_bn(cfg: DictConfig) -> None:
    """`bn`: train (batch-norm statistics re-estimated on the method's batches) or eval (kept)."""
    check_choices(cfg, "method", {"bn": BN_MODES})


def cycle_batches(data, batch_size: int, ctx: Context, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled batches of `data` without end, their order drawn from `generator`: a second stream beside
    the main one (D_f beside D_r) that leaves the main stream's order as it would be alone."""
    while True:
        order = torch.randperm(len(data), generator=generator).to(data.labels.device)
        for start in range(0, len(data), batch_size):
            index = order[start:start + batch_size]
            yield ctx.inputs(data.images[index]), data.labels[index]


def stream_generator(ctx: Context, name: str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(ctx.seed, name))


def check_fraction(cfg: DictConfig, key: str) -> None:
    number(0.0, 1.0)(f"method.{key}", cfg.get(key))
