"""Relearning attack for classifiers (docs/protocol.md): fine-tune the unlearned model briefly on a small sample of
D_r (never D_f) and measure how far forget accuracy climbs back. Retrain gives the reference value."""

from __future__ import annotations

import copy

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.batching import step_indices
from unlearn_bench.checks import check_positive
from unlearn_bench.context import Context
from unlearn_bench.data import Splits
from unlearn_bench.metrics.core import accuracy, logits_on
from unlearn_bench.optim import sgd
from unlearn_bench.rng import seed_stage


def relearn_sample(splits: Splits, samples: int, seed: int) -> torch.Tensor:
    """Indices into D_r of the attacker's sample: the same for every model of a cell."""
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randperm(len(splits.retain), generator=generator)[: min(samples, len(splits.retain))]


def check_relearn(cfg: DictConfig) -> None:
    check_positive(cfg, "relearn", ("samples", "steps", "lr", "batch_size"))


def relearn_forget_accuracy(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> float:
    """Forget-set accuracy (%) after `cfg.steps` SGD steps on the retain sample."""
    check_relearn(cfg)
    seed_stage(ctx.seed, "relearn")
    attacked = copy.deepcopy(model).train()
    sample = splits.retain.subset(relearn_sample(splits, cfg.samples, ctx.seed).to(splits.retain.labels.device))
    optimizer = sgd(attacked.parameters(), cfg)
    for index in step_indices(len(sample), cfg.batch_size, cfg.steps, ctx.device):
        loss = nn.functional.cross_entropy(attacked(ctx.inputs(sample.images[index])), sample.labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return accuracy(logits_on(attacked, splits.forget, ctx), splits.forget.labels)
