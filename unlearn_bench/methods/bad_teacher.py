"""Bad Teacher: distil, on D_f together with a sample of D_r, the original model on the retain examples and
a randomly initialised network (the "incompetent teacher") on the forget examples (vikram2000b/
bad-teaching-unlearning, unlearn.py `blindspot_unlearner` / `UnlearnerLoss`)."""

from __future__ import annotations

import copy

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.batching import batch_indices
from unlearn_bench.checks import check_choices, check_positive
from unlearn_bench.context import Context
from unlearn_bench.data import Splits
from unlearn_bench.methods._common import METHODS, check_bn, check_fraction, stream_generator
from unlearn_bench.rng import derive_seed, seed_stage


def check(cfg: DictConfig) -> None:
    check_bn(cfg)
    check_positive(cfg, "method", ("temperature",))
    check_fraction(cfg, "retain_share")
    check_choices(cfg, "method", {"kl_reduction": ("mean", "batchmean")})


def unlearner_loss(logits: torch.Tensor, is_forget: torch.Tensor, full_teacher: torch.Tensor,
                   bad_teacher: torch.Tensor, temperature: float, reduction: str) -> torch.Tensor:
    """KL(teacher ‖ student), the teacher of each example chosen by its flag (1: forget, the bad teacher)."""
    flag = is_forget.float()[:, None]
    target = flag * nn.functional.softmax(bad_teacher / temperature, 1) + (1 - flag) * nn.functional.softmax(
        full_teacher / temperature, 1)
    total = nn.functional.kl_div(nn.functional.log_softmax(logits / temperature, 1), target, reduction="sum")
    # `mean`: torch's elementwise mean over batch × classes, the reference's default; `batchmean`: per example.
    return total / (logits.numel() if reduction == "mean" else len(logits))


def incompetent_teacher(ctx: Context) -> nn.Module:
    """The randomly initialised network, seeded by the run (the global random stream is left as it was)."""
    state = torch.random.get_rng_state()
    seed_stage(derive_seed(ctx.seed, "bad_teacher"), "incompetent-teacher")
    teacher = ctx.new_model().eval()
    torch.random.set_rng_state(state)
    return teacher


@METHODS.register("bad_teacher", check=check)
def bad_teacher(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    check_positive(cfg, "method", ("epochs", "lr", "batch_size"))
    full = copy.deepcopy(model).eval()
    incompetent = incompetent_teacher(ctx)
    generator = stream_generator(ctx, "bad_teacher-retain-sample")
    n_retain = int(round(cfg.retain_share * len(splits.retain)))
    sample = torch.randperm(len(splits.retain), generator=generator)[:n_retain].to(splits.retain.labels.device)
    images = torch.cat([splits.forget.images, splits.retain.images[sample]])
    is_forget = torch.cat([torch.ones(len(splits.forget), dtype=torch.bool, device=images.device),
                           torch.zeros(n_retain, dtype=torch.bool, device=images.device)])
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.train(cfg.bn == "train")
    for _ in range(cfg.epochs):
        for index in batch_indices(len(images), cfg.batch_size, images.device):
            x = ctx.inputs(images[index])
            with torch.no_grad():
                full_logits, bad_logits = full(x), incompetent(x)
            loss = unlearner_loss(model(x), is_forget[index], full_logits, bad_logits, cfg.temperature,
                                  cfg.kl_reduction)
            if not torch.isfinite(loss):
                ctx.report.diverged = True
                return model.eval()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()
