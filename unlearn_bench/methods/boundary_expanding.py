"""Boundary Expanding: add a shadow output class, train on D_f labelled as that class, then remove the
shadow class again so the model ends with its original outputs (the reference code forgot this step)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.batching import batches
from unlearn_bench.context import Context
from unlearn_bench.data import ImageData, Splits
from unlearn_bench.methods._common import METHODS, check_bn, run_epochs
from unlearn_bench.models import classifier_name


def resize_classifier(model: nn.Module, num_outputs: int) -> None:
    """Replace the final linear layer by one with `num_outputs` rows, keeping the rows both share;
    new rows get PyTorch's default initialisation."""
    name = classifier_name(model)
    old: nn.Linear = getattr(model, name)
    new = nn.Linear(old.in_features, num_outputs, bias=old.bias is not None).to(old.weight.device)
    keep = min(old.out_features, num_outputs)
    with torch.no_grad():
        new.weight[:keep] = old.weight[:keep]
        if old.bias is not None:
            new.bias[:keep] = old.bias[:keep]
    setattr(model, name, new)


@METHODS.register("boundary_expanding", check=check_bn)
def boundary_expanding(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    resize_classifier(model, ctx.num_classes + 1)
    shadow = ImageData(splits.forget.images, torch.full_like(splits.forget.labels, ctx.num_classes))
    run_epochs(model, cfg, ctx, "boundary_expanding", lambda epoch: batches(shadow, cfg.batch_size, ctx), bn=cfg.bn)
    resize_classifier(model, ctx.num_classes)
    return model
