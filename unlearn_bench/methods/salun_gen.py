"""SalUn for diffusion (docs/generation.md, §13): on D_f, steer ε_θ(x_t, t, c_f) toward a pseudo-label's prediction;
plus β × the denoising loss on D_r; gradients clipped, then only the salient weights move.

`target: current_fixed` (default) is the reference's (OPTML-Group/Unlearn-Saliency DDPM/runners/
diffusion.py `saliency_unlearn`, method rl): the current model's own ε at the fixed class (c_f + 1) mod C,
detached. `frozen_random` is the reading of docs/generation.md this suite used before: the frozen original's ε at a
random other class."""

from __future__ import annotations

import copy

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.checks import check_choices, number, optional
from unlearn_bench.data import Splits
from unlearn_bench.generation.common import GenContext, diffusion_saliency_mask
from unlearn_bench.generation.diffusion import image_batches, optimise
from unlearn_bench.masks import check_mask_ratio
from unlearn_bench.methods._common import METHODS

TARGETS = ("current_fixed", "frozen_random")


def check(cfg: DictConfig) -> None:
    check_mask_ratio(cfg.get("mask_ratio"))
    check_choices(cfg, "method", {"target": TARGETS})
    number(0.0)("method.beta", cfg.beta)
    optional(number(0.0, low_open=True))("method.grad_clip", cfg.grad_clip)
    optional(number(0.0, 1.0, low_open=True, high_open=True))("method.ema_decay", cfg.ema_decay)


def forget_target(model: nn.Module, frozen: nn.Module, diffusion, x_t: torch.Tensor, t: torch.Tensor,
                  y_f: torch.Tensor, target: str) -> torch.Tensor:
    """The ε that ε_θ(x_t, t, c_f) is pulled toward on D_f (no gradient flows through it)."""
    c = diffusion.num_classes
    with torch.no_grad():
        if target == "current_fixed":
            return diffusion.eps(model, x_t, t, (y_f + 1) % c).detach()
        other = (y_f + torch.randint(1, c, y_f.shape, device=y_f.device)) % c
        return diffusion.eps(frozen, x_t, t, other)


@METHODS.register("salun_gen", check=check)
def salun_gen(model: nn.Module, splits: Splits, cfg: DictConfig, gctx: GenContext) -> nn.Module:
    diffusion, device = gctx.diffusion, gctx.ctx.device
    mask = diffusion_saliency_mask(model, splits.forget, diffusion, cfg.mask_ratio, cfg.batch_size)
    frozen = copy.deepcopy(model).eval().requires_grad_(False) if cfg.target == "frozen_random" else None
    retain_batches = image_batches(splits.retain, cfg.batch_size, cfg.steps, device)

    def loss_fn(x_f: torch.Tensor, y_f: torch.Tensor) -> torch.Tensor:
        x_t, t, _ = diffusion.noised(x_f)
        target = forget_target(model, frozen, diffusion, x_t, t, y_f, cfg.target)
        forget = nn.functional.mse_loss(diffusion.eps(model, x_t, t, y_f), target)
        x_r, y_r = next(retain_batches)
        return forget + cfg.beta * diffusion.denoise_loss(model, x_r, y_r)

    def masked_step(optimizer: torch.optim.Optimizer) -> None:
        if cfg.grad_clip:  # the reference clips the whole gradient, then masks it
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        for name, param in model.named_parameters():
            if param.grad is not None:
                param.grad.mul_(mask[name])  # Adam with a zero gradient from the start never moves a weight
        optimizer.step()

    optimise(model, cfg.steps, cfg.lr, image_batches(splits.forget, cfg.batch_size, cfg.steps, device), loss_fn,
             "salun_gen", gctx.ctx.progress, step_fn=masked_step, ema_decay=cfg.ema_decay)
    return model
