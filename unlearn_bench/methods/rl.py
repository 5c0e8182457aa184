"""RL: random labels on D_f, true labels on D_r.

Switches (conf/method/rl.yaml): `labels` any | wrong (random over every class, as the reference code, or
only over the wrong ones), `schedule` mixed | sequential (forget and retain samples shuffled together into
one pass, as the reference code's ConcatDataset, or a forget pass then a retain pass each epoch).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.batching import batch_indices, batches
from unlearn_bench.checks import check_choices
from unlearn_bench.context import Context
from unlearn_bench.data import ImageData, Splits
from unlearn_bench.errors import ConfigError
from unlearn_bench.methods._common import METHODS, Mask, run_epochs

LABEL_MODES = ("any", "wrong")
SCHEDULES = ("mixed", "sequential")


def random_labels(labels: torch.Tensor, num_classes: int, mode: str) -> torch.Tensor:
    if mode == "any":
        return torch.randint(0, num_classes, labels.shape, device=labels.device)
    if mode == "wrong":
        return (labels + torch.randint(1, num_classes, labels.shape, device=labels.device)) % num_classes
    raise ConfigError("method.labels", mode, LABEL_MODES)


def rl_batches(splits: Splits, cfg: DictConfig, ctx: Context) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch: D_f with fresh random labels and D_r with true labels, mixed or one after the other."""
    relabelled = ImageData(splits.forget.images, random_labels(splits.forget.labels, ctx.num_classes, cfg.labels))
    if cfg.schedule == "sequential":
        yield from batches(relabelled, cfg.batch_size, ctx)
        yield from batches(splits.retain, cfg.batch_size, ctx)
    elif cfg.schedule == "mixed":
        images = torch.cat([relabelled.images, splits.retain.images])
        labels = torch.cat([relabelled.labels, splits.retain.labels])
        for index in batch_indices(len(labels), cfg.batch_size, ctx.device):
            yield ctx.inputs(images[index]), labels[index]
    else:
        raise ConfigError("method.schedule", cfg.schedule, SCHEDULES)


def random_label_unlearning(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context, desc: str,
                            mask: Mask | None = None, mask_update: str = "hold") -> nn.Module:
    return run_epochs(model, cfg, ctx, desc, lambda epoch: rl_batches(splits, cfg, ctx), mask=mask,
                      mask_update=mask_update)


def check_rl(cfg: DictConfig) -> None:
    check_choices(cfg, "method", {"labels": LABEL_MODES, "schedule": SCHEDULES})


@METHODS.register("rl", check=check_rl)
def rl(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    return random_label_unlearning(model, splits, cfg, ctx, "rl")
