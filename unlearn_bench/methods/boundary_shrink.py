"""Boundary Shrink: relabel each D_f sample to the class a frozen θ_o predicts for its FGSM neighbour
(ε in [0, 1] pixel space), then train on D_f with those labels."""

from __future__ import annotations

import copy

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.batching import batch_indices
from unlearn_bench.checks import boolean, number
from unlearn_bench.context import Context
from unlearn_bench.data import Splits
from unlearn_bench.methods._common import METHODS, check_bn, run_epochs


def fgsm_neighbour_labels(frozen: nn.Module, unit_images: torch.Tensor, labels: torch.Tensor, epsilon: float,
                          ctx: Context, discretize: bool = True) -> torch.Tensor:
    """argmax θ_o(x + ε·sign ∇ₓ CE(θ_o(x), y)), the nearest 'other side' of the decision boundary; with
    `discretize` the neighbour is rounded to the 1/255 pixel grid, as the reference's `discretize` does."""
    x = unit_images.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(frozen(ctx.normalize(x)), labels)
    (grad,) = torch.autograd.grad(loss, x)
    with torch.no_grad():
        adversarial = (x + epsilon * grad.sign()).clamp_(0.0, 1.0)
        if discretize:
            adversarial = torch.round(adversarial * 255) / 255
        return frozen(ctx.normalize(adversarial)).argmax(1)


def check_boundary_shrink(cfg: DictConfig) -> None:
    check_bn(cfg)
    boolean("method.discretize", cfg.discretize)
    number(0.0, 1.0)("method.epsilon", cfg.epsilon)


@METHODS.register("boundary_shrink", check=check_boundary_shrink)
def boundary_shrink(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    frozen = copy.deepcopy(model).eval().requires_grad_(False)
    forget = splits.forget
    changed = ctx.report.diagnostics.setdefault("relabel_counts", {"changed": 0, "total": 0})

    def epoch_batches(epoch: int):
        for index in batch_indices(len(forget), cfg.batch_size, ctx.device):
            unit = ctx.augment(forget.images[index]).float().div_(255.0)
            neighbour = fgsm_neighbour_labels(frozen, unit, forget.labels[index], cfg.epsilon, ctx, cfg.discretize)
            changed["changed"] += int((neighbour != forget.labels[index]).sum())
            changed["total"] += len(index)
            yield ctx.normalize(unit), neighbour

    return run_epochs(model, cfg, ctx, "boundary_shrink", epoch_batches, bn=cfg.bn)
