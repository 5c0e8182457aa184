"""ESD-style baseline (negative guidance): train ε_θ(x_t, t, c_f) toward the frozen original's
ε(x_t, t, ∅) − η (ε(x_t, t, c_f) − ε(x_t, t, ∅)), optionally with a retain denoising term."""

from __future__ import annotations

import copy

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.checks import keys_check, number
from unlearn_bench.data import Splits
from unlearn_bench.generation.common import GenContext
from unlearn_bench.generation.diffusion import image_batches, optimise
from unlearn_bench.methods._common import METHODS


@METHODS.register("esd", check=keys_check("method", {"eta": number(0.0), "retain_weight": number(0.0)}))
def esd(model: nn.Module, splits: Splits, cfg: DictConfig, gctx: GenContext) -> nn.Module:
    diffusion, device = gctx.diffusion, gctx.ctx.device
    frozen = copy.deepcopy(model).eval().requires_grad_(False)
    retain_batches = image_batches(splits.retain, cfg.batch_size, cfg.steps, device)

    def loss_fn(x_f: torch.Tensor, y_f: torch.Tensor) -> torch.Tensor:
        x_t, t, _ = diffusion.noised(x_f)
        with torch.no_grad():
            e_null = diffusion.eps(frozen, x_t, t, torch.full_like(y_f, diffusion.num_classes))
            e_cond = diffusion.eps(frozen, x_t, t, y_f)
        loss = nn.functional.mse_loss(diffusion.eps(model, x_t, t, y_f), e_null - cfg.eta * (e_cond - e_null))
        if cfg.retain_weight:
            x_r, y_r = next(retain_batches)
            loss = loss + cfg.retain_weight * diffusion.denoise_loss(model, x_r, y_r)
        return loss

    optimise(model, cfg.steps, cfg.lr, image_batches(splits.forget, cfg.batch_size, cfg.steps, device), loss_fn,
             "esd", gctx.ctx.progress)
    return model
