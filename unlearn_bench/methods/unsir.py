"""UNSIR (class-wise forgetting only): learn an error-maximising noise batch for the forgotten class, then
one impair epoch on that noise (labelled as the class) mixed with retained samples, and one repair epoch
on the retained samples alone (if-loops/selective-synaptic-dampening, src/unlearn.py `UNSIR_noise_train`,
`UNSIR_create_noisy_loader` and src/forget_full_class_strategies.py `UNSIR`)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.batching import batch_indices
from unlearn_bench.checks import check_choices, check_positive
from unlearn_bench.context import Context
from unlearn_bench.data import Splits
from unlearn_bench.errors import ConfigError
from unlearn_bench.methods._common import METHODS, check_bn
from unlearn_bench.rng import derive_seed


def check(cfg: DictConfig) -> None:
    check_bn(cfg)
    check_positive(cfg, "method", ("noise_batch_size", "noise_steps", "noise_lr", "noise_batches",
                                   "samples_per_class", "lr", "batch_size", "repair_batch_size"))
    check_choices(cfg, "method", {"noise_copies": ("reference", "all"), "noise_bn": ("train", "eval")})


def error_maximising_noise(model: nn.Module, forget_class: int, shape: tuple[int, ...], cfg: DictConfig,
                           generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """A batch of model inputs that maximises the cross-entropy of `forget_class`, with an L2 penalty
    (0.1 × mean squared norm), by Adam (the reference's UNSIR_noise_train), the model in the mode
    `noise_bn` names."""
    noise = torch.randn(shape, generator=generator).to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([noise], lr=cfg.noise_lr)
    labels = torch.full((shape[0],), forget_class, dtype=torch.long, device=device)
    # The reference never calls .eval(): its noise passes use the batch's statistics and move BatchNorm's
    # running statistics (noise_bn: train); eval keeps the original's statistics fixed.
    model.train(cfg.noise_bn == "train")
    for _ in range(cfg.noise_steps):
        loss = -nn.functional.cross_entropy(model(noise), labels) + 0.1 * noise.pow(2).sum(dim=(1, 2, 3)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return noise.detach()


def one_epoch(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int, lr: float,
              bn: str, ctx: Context) -> bool:
    """One shuffled epoch of Adam on (inputs, labels) (the reference's fit_one_unlearning_cycle with 1
    epoch); False when the loss stopped being finite."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train(bn == "train")
    for index in batch_indices(len(labels), batch_size, inputs.device):
        loss = nn.functional.cross_entropy(model(inputs[index]), labels[index])
        if not torch.isfinite(loss):
            return False
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return True


def check_cell(cfg: DictConfig) -> None:
    if cfg.forget_rate.mode != "class":
        raise ConfigError("method", cfg.method.name, "forget_rate=class (unsir unlearns a whole class; it has no "
                          "form for random forgetting)")


@METHODS.register("unsir", check=check, check_cell=check_cell)
def unsir(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    check(cfg)
    forget_class = int(splits.forget.labels[0])
    retain = splits.retain
    keep = torch.cat([torch.nonzero(retain.labels.cpu() == c).flatten()[:cfg.samples_per_class]
                      for c in range(ctx.num_classes) if c != forget_class]).sort().values.to(retain.labels.device)
    retain_inputs = ctx.inputs(retain.images[keep], augment=False)
    retain_labels = retain.labels[keep]
    generator = torch.Generator().manual_seed(derive_seed(ctx.seed, "unsir-noise"))
    shape = (cfg.noise_batch_size, *retain_inputs.shape[1:])
    noise = error_maximising_noise(model, forget_class, shape, cfg, generator, retain_inputs.device)
    # The reference appends, for each of its noise batches, `batch[0].size(0)` images of the one noise
    # tensor: the channel count (3 on CIFAR), not the batch size. `all` appends the whole batch.
    per_batch = noise.shape[1] if cfg.noise_copies == "reference" else noise.shape[0]
    noisy = noise[:per_batch].repeat(cfg.noise_batches, 1, 1, 1)
    impair_inputs = torch.cat([noisy, retain_inputs])
    impair_labels = torch.cat([torch.full((len(noisy),), forget_class, dtype=torch.long, device=noisy.device),
                               retain_labels])
    ok = one_epoch(model, impair_inputs, impair_labels, cfg.batch_size, cfg.lr, cfg.bn, ctx)
    ok = ok and one_epoch(model, retain_inputs, retain_labels, cfg.repair_batch_size, cfg.lr, cfg.bn, ctx)
    if not ok:
        ctx.report.diverged = True
    return model.eval()
