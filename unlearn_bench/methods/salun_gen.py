"""SalUn for diffusion (SPEC §6): on D_f, steer ε_θ(x_t, t, c_f) to the frozen original's prediction for
a random other class c'; plus β × the denoising loss on D_r; only the salient weights move."""

from __future__ import annotations

import copy

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.data import Splits
from unlearn_bench.generation.common import GenContext, diffusion_saliency_mask
from unlearn_bench.generation.diffusion import image_batches, optimise
from unlearn_bench.masks import check_mask_ratio
from unlearn_bench.methods._common import METHODS


@METHODS.register("salun_gen", check=lambda cfg: check_mask_ratio(cfg.get("mask_ratio")))
def salun_gen(model: nn.Module, splits: Splits, cfg: DictConfig, gctx: GenContext) -> nn.Module:
    diffusion, device = gctx.diffusion, gctx.ctx.device
    mask = diffusion_saliency_mask(model, splits.forget, diffusion, cfg.mask_ratio, cfg.batch_size)
    frozen = copy.deepcopy(model).eval().requires_grad_(False)
    retain_batches = image_batches(splits.retain, cfg.batch_size, cfg.steps, device)
    c = diffusion.num_classes

    def loss_fn(x_f: torch.Tensor, y_f: torch.Tensor) -> torch.Tensor:
        x_t, t, _ = diffusion.noised(x_f)
        other = (y_f + torch.randint(1, c, y_f.shape, device=device)) % c
        with torch.no_grad():
            target = diffusion.eps(frozen, x_t, t, other)
        forget = nn.functional.mse_loss(diffusion.eps(model, x_t, t, y_f), target)
        x_r, y_r = next(retain_batches)
        return forget + cfg.beta * diffusion.denoise_loss(model, x_r, y_r)

    def masked_step(optimizer: torch.optim.Optimizer) -> None:
        for name, param in model.named_parameters():
            if param.grad is not None:
                param.grad.mul_(mask[name])  # Adam with a zero gradient from the start never moves a weight
        optimizer.step()

    optimise(model, cfg.steps, cfg.lr, image_batches(splits.forget, cfg.batch_size, cfg.steps, device), loss_fn,
             "salun_gen", gctx.ctx.progress, step_fn=masked_step)
    return model
