"""IU: influence unlearning, one Newton-like step θ ← θ + α·H⁻¹v.

v is the gradient difference between D_f and D_r; H⁻¹v comes from the WoodFisher rank-1 recursion over
`num_samples` retain samples (empirical Fisher F = I + (1/N) Σ g gᵀ, as the reference code).
Switches: `recursion` reference | exact (the reference's cheap O(N·d) recursion that rescales a single
running vector, or the exact Sherman-Morrison recursion, O(N²·d), for small models); `v_scale`
reference | none (the reference weighs the mean-gradient difference by |D_f| / |D|).
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.batching import batches
from unlearn_bench.checks import choice, integer, keys_check, number
from unlearn_bench.context import Context
from unlearn_bench.data import ImageData, Splits
from unlearn_bench.errors import ConfigError
from unlearn_bench.methods._common import METHODS

RECURSIONS = ("reference", "exact")
V_SCALES = ("reference", "none")


def flat_grad(model: nn.Module, loss: torch.Tensor) -> torch.Tensor:
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])


def mean_gradient(model: nn.Module, data: ImageData, batch_size: int, ctx: Context) -> torch.Tensor:
    total = None
    for x, y in batches(data, batch_size, ctx, shuffle=False):
        g = flat_grad(model, nn.functional.cross_entropy(model(x), y, reduction="sum"))
        total = g if total is None else total + g
    return total / len(data)


def sample_gradients(model: nn.Module, data: ImageData, num_samples: int, ctx: Context):
    """Per-sample gradients of a seeded random subset of `data`, one at a time (memory O(d))."""
    generator = torch.Generator().manual_seed(ctx.seed)
    index = torch.randperm(len(data), generator=generator)[:num_samples].to(data.labels.device)
    for i in index:
        x = ctx.inputs(data.images[i:i + 1])
        yield flat_grad(model, nn.functional.cross_entropy(model(x), data.labels[i:i + 1]))


def woodfisher_inverse_hvp(model: nn.Module, data: ImageData, v: torch.Tensor, num_samples: int,
                           recursion: str, ctx: Context) -> torch.Tensor:
    if recursion not in RECURSIONS:
        raise ConfigError("method.recursion", recursion, RECURSIONS)
    n = float(num_samples)
    k_vec = v.clone()
    if recursion == "reference":
        o_vec = None
        for g in sample_gradients(model, data, num_samples, ctx):
            if o_vec is None:
                o_vec = g.clone()
                continue
            tmp = torch.dot(o_vec, g)
            k_vec -= (torch.dot(k_vec, g) / (n + tmp)) * o_vec
            o_vec -= (tmp / (n + tmp)) * o_vec
        return k_vec
    # exact: H_k⁻¹x = x − Σ_j u_j (u_j·x) / (N + g_j·u_j), with u_j = H_{j−1}⁻¹ g_j
    us: list[tuple[torch.Tensor, torch.Tensor]] = []

    def apply(x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        for u, denom in us:
            out -= u * (torch.dot(u, x) / denom)
        return out

    for g in sample_gradients(model, data, num_samples, ctx):
        u = apply(g)
        us.append((u, n + torch.dot(g, u)))
    return apply(k_vec)


def influence_perturbation(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> torch.Tensor:
    """α·H⁻¹v as one flat vector over model.parameters()."""
    if cfg.v_scale not in V_SCALES:
        raise ConfigError("method.v_scale", cfg.v_scale, V_SCALES)
    model.eval()
    v = mean_gradient(model, splits.forget, cfg.batch_size, ctx) - mean_gradient(model, splits.retain,
                                                                                cfg.batch_size, ctx)
    if cfg.v_scale == "reference":
        v *= len(splits.forget) / len(splits.train)
    return cfg.alpha * woodfisher_inverse_hvp(model, splits.retain, v, cfg.num_samples, cfg.recursion, ctx)


check_iu = keys_check("method", {"alpha": number(0.0), "num_samples": integer(1), "recursion": choice(*RECURSIONS),
                                 "v_scale": choice(*V_SCALES)})


@METHODS.register("iu", check=check_iu)
def iu(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    perturbation = influence_perturbation(model, splits, cfg, ctx)
    with torch.no_grad():
        offset = 0
        for param in model.parameters():
            param += perturbation[offset:offset + param.numel()].view_as(param)
            offset += param.numel()
    return model
