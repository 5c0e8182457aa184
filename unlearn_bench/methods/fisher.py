"""Fisher forgetting: add Gaussian noise to every weight with a variance proportional to the inverse of
its diagonal Fisher information on D_r, so weights that D_r does not constrain are scrambled (Golatkar
et al.; if-loops/selective-synaptic-dampening, src/forget_random_strategies.py `FisherForgetting`).

The reference accumulates, one example at a time, Σ_y p(y|x)·(∂CE(f(x), y)/∂θ)² over every class y;
here the per-example gradients of a batch come from torch.func (vmap of grad), which gives the same sums."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn
from torch.func import functional_call, grad, vmap

from unlearn_bench.batching import batches
from unlearn_bench.checks import check_positive
from unlearn_bench.context import Context
from unlearn_bench.data import ImageData, Splits
from unlearn_bench.methods._common import METHODS


def check(cfg: DictConfig) -> None:
    check_positive(cfg, "method", ("alpha", "batch_size", "var_cap", "classifier_var_cap", "bn_var_scale"))


def fisher_diagonal(model: nn.Module, data: ImageData, batch_size: int, ctx: Context) -> dict[str, torch.Tensor]:
    """Mean over examples of Σ_y p(y|x)·(∂CE(f(x), y)/∂θ)², eval mode, no augmentation."""
    model.eval()
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def example_loss(p: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (p, buffers), (x[None],))
        return nn.functional.cross_entropy(logits, y[None])

    per_example = vmap(grad(example_loss), in_dims=(None, 0, 0))
    total = {name: torch.zeros_like(p) for name, p in params.items()}
    for x, _ in batches(data, batch_size, ctx, augment=False, shuffle=False):
        with torch.no_grad():
            probs = nn.functional.softmax(model(x), dim=-1)
        for label in range(probs.shape[1]):
            target = torch.full((len(x),), label, dtype=torch.long, device=x.device)
            grads = per_example(params, x, target)
            for name, g in grads.items():
                weight = probs[:, label].view(-1, *([1] * (g.dim() - 1)))
                total[name] += (weight * g.pow(2)).sum(0)
    return {name: value / max(len(data), 1) for name, value in total.items()}


def noise_variance(name: str, p: torch.Tensor, fisher: torch.Tensor, cfg: DictConfig, num_classes: int) -> torch.Tensor:
    """The reference's get_mean_var: 1/(F + 1e-8) capped (lower for the classifier's rows), × α, averaged
    over the input dimension of a weight matrix or kernel, × 10 for one-dimensional parameters."""
    var = (1.0 / (fisher + 1e-8)).clamp(max=cfg.var_cap)
    if p.size(0) == num_classes:
        var = var.clamp(max=cfg.classifier_var_cap)
    var = cfg.alpha * var
    if p.dim() > 1:
        var = var.mean(dim=1, keepdim=True).expand_as(p).clone()
    if p.dim() == 1:
        var = var * cfg.bn_var_scale
    return var


@METHODS.register("fisher", check=check)
def fisher(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    check(cfg)
    information = fisher_diagonal(model, splits.retain, cfg.batch_size, ctx)
    with torch.no_grad():
        for name, p in model.named_parameters():
            var = noise_variance(name, p, information[name], cfg, ctx.num_classes)
            p.add_(var.sqrt() * torch.randn_like(p))
    return model.eval()
