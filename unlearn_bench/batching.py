"""Batches without per-sample Python: the data stay uint8 on the model's device; each batch is indexed,
augmented in one batched call and normalised there."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from unlearn_bench.context import Context
from unlearn_bench.data import ImageData


def batch_indices(n: int, batch_size: int, device: torch.device, shuffle: bool = True) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, device=device) if shuffle else torch.arange(n, device=device)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def step_indices(n: int, batch_size: int, steps: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Exactly `steps` shuffled index batches, cycling through the data as often as needed (step budgets)."""
    done = 0
    while done < steps:
        for index in batch_indices(n, batch_size, device):
            if done >= steps:
                return
            yield index
            done += 1


def batches(data: ImageData, batch_size: int, ctx: Context, *, augment: bool = True,
            shuffle: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for index in batch_indices(len(data), batch_size, ctx.device, shuffle):
        yield ctx.inputs(data.images[index], augment), data.labels[index]
