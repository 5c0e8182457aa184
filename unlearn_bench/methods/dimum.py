"""DiMUM (defence, docs/generation.md): memorise alternative data under the forgotten label,
L = L_denoise(D_alt, label c_f) + λ L_denoise(D_r), trained until the first term converges.

`alt_data` switch: class (real images of another class, `alt_class`, default c_f + 1), generated (images
the original model generates for that class), noise (uniform noise images). `until` switch: converged
(stop once the D_alt term's mean over a `window` of steps falls by less than `rel_tol` of the previous
window's; `steps` caps it) or steps (the whole budget, as the other methods).
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.checks import check_choices, check_positive, integer, number, optional
from unlearn_bench.data import ImageData, Splits
from unlearn_bench.errors import ConfigError
from unlearn_bench.generation.common import GenContext
from unlearn_bench.generation.diffusion import image_batches, optimise, plateaued, to_uint8
from unlearn_bench.methods._common import METHODS

ALT_DATA = ("class", "generated", "noise")
UNTIL = ("converged", "steps")


def alternative_data(model: nn.Module, splits: Splits, cfg: DictConfig, gctx: GenContext) -> ImageData:
    """D_alt, labelled c_f, as many images as D_f."""
    if cfg.alt_data not in ALT_DATA:
        raise ConfigError("method.alt_data", cfg.alt_data, ALT_DATA)
    n, c_f, device = len(splits.forget), gctx.forget_class, gctx.ctx.device
    alt_class = cfg.alt_class if cfg.alt_class is not None else (c_f + 1) % gctx.diffusion.num_classes
    if alt_class == c_f or not 0 <= alt_class < gctx.diffusion.num_classes:
        raise ConfigError("method.alt_class", alt_class, f"a class in [0, {gctx.diffusion.num_classes - 1}] "
                          f"other than the forgotten class {c_f}")
    shape = tuple(splits.forget.images.shape[1:])
    if cfg.alt_data == "class":
        pool = splits.retain.images[splits.retain.labels == alt_class]
        images = pool[torch.randint(len(pool), (n,), device=pool.device)]
    elif cfg.alt_data == "generated":
        labels = torch.full((n,), alt_class, device=device)
        images = to_uint8(gctx.diffusion.sample(model, labels, shape))
    else:
        images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, device=device)
    return ImageData(images, torch.full((n,), c_f, dtype=torch.long, device=device))


def check_dimum(cfg: DictConfig) -> None:
    check_choices(cfg, "method", {"alt_data": ALT_DATA, "until": UNTIL})
    optional(integer(0))("method.alt_class", cfg.alt_class)
    number(0.0)("method.lam", cfg.lam)
    if cfg.until == "converged":
        check_positive(cfg, "method", ("window", "rel_tol"))


@METHODS.register("dimum", check=check_dimum)
def dimum(model: nn.Module, splits: Splits, cfg: DictConfig, gctx: GenContext) -> nn.Module:
    check_dimum(cfg)
    diffusion, device = gctx.diffusion, gctx.ctx.device
    alt = alternative_data(model, splits, cfg, gctx)
    retain_batches = image_batches(splits.retain, cfg.batch_size, cfg.steps, device)
    alt_losses: list[float] = []

    def loss_fn(x_alt: torch.Tensor, y_alt: torch.Tensor) -> torch.Tensor:
        x_r, y_r = next(retain_batches)
        alt_term, retain_term = dimum_terms(model, diffusion, x_alt, y_alt, x_r, y_r)
        alt_losses.append(alt_term.item())
        return alt_term + cfg.lam * retain_term

    stop = (lambda: plateaued(alt_losses, cfg.window, cfg.rel_tol)) if cfg.until == "converged" else None
    optimise(model, cfg.steps, cfg.lr, image_batches(alt, cfg.batch_size, cfg.steps, device), loss_fn, "dimum",
             gctx.ctx.progress, stop=stop)
    gctx.ctx.report.diagnostics["method_steps"] = len(alt_losses)
    return model


def dimum_terms(model: nn.Module, diffusion, x_alt: torch.Tensor, y_alt: torch.Tensor, x_r: torch.Tensor,
                y_r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_denoise(D_alt, c_f), L_denoise(D_r)), in this order (the order of their random draws)."""
    return diffusion.denoise_loss(model, x_alt, y_alt, label_dropout=0.0), diffusion.denoise_loss(model, x_r, y_r)


def dimum_loss(model: nn.Module, diffusion, x_alt: torch.Tensor, y_alt: torch.Tensor, x_r: torch.Tensor,
               y_r: torch.Tensor, lam: float) -> torch.Tensor:
    alt_term, retain_term = dimum_terms(model, diffusion, x_alt, y_alt, x_r, y_r)
    return alt_term + lam * retain_term
