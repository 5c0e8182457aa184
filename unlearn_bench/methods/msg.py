"""MSG (Masked Small Gradients), a leading entry of the NeurIPS 2023 unlearning challenge as DeepUnlearn
packages it (xcadet/deepunlearn munl/unlearning/kgltop2.py): in every convolution, re-initialise the
`init_rate` share of weights with the smallest |gradient| of a SNIP-like saliency pass (CE on a D_r sample
of |D_f| examples, minus CE on D_f), then fine-tune on D_r with those weights' gradients at full strength
and every other convolution weight's gradient scaled by `kept_grad_scale` (0.1)."""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.batching import batches
from unlearn_bench.checks import check_positive, number
from unlearn_bench.context import Context
from unlearn_bench.data import Splits
from unlearn_bench.methods._common import METHODS, check_bn, run_epochs
from unlearn_bench.optim import sgd
from unlearn_bench.rng import derive_seed


def check_msg(cfg: DictConfig) -> None:
    check_bn(cfg)
    number(0.0, 1.0, low_open=True, high_open=True)("method.init_rate", cfg.init_rate)
    number(0.0, 1.0)("method.kept_grad_scale", cfg.kept_grad_scale)
    check_positive(cfg, "method", ("saliency_batch_size",))


def saliency_gradients(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> None:
    """`get_grads_for_snip`: .grad = Σ_batches ∇CE(D_r sample batch) − Σ_batches ∇CE(D_f batch); the D_r
    sample has |D_f| examples (at most |D_r|). BN mode `bn` (the model's mode in the reference is the
    caller's; eval keeps θ_o's statistics)."""
    model.train(cfg.bn == "train")
    generator = torch.Generator().manual_seed(derive_seed(ctx.seed, "msg-saliency"))
    sample = torch.randperm(len(splits.retain), generator=generator)[:len(splits.forget)]
    retain_sample = splits.retain.subset(sample.to(splits.retain.labels.device))
    model.zero_grad(set_to_none=True)
    for x, y in batches(retain_sample, cfg.saliency_batch_size, ctx):
        nn.functional.cross_entropy(model(x), y).backward()
    for x, y in batches(splits.forget, cfg.batch_size, ctx):
        (-nn.functional.cross_entropy(model(x), y)).backward()


@torch.no_grad()
def reinitialise_small_gradients(model: nn.Module, init_rate: float, kept_grad_scale: float) -> dict[str, torch.Tensor]:
    """`re_init_model_snip_ver2_little_grad`: per Conv2d, the round(init_rate · n) weights of smallest |grad|
    take fresh Kaiming-normal (fan_out, ReLU) values, the rest keep theirs; a bias, where present, is
    re-initialised whole (the reference builds a new layer and copies only the kept weights). Returns
    each convolution weight's gradient multiplier: 1 where re-initialised, kept_grad_scale elsewhere."""
    multipliers = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d):
            continue
        weight = module.weight
        grad = weight.grad if weight.grad is not None else torch.zeros_like(weight)
        mask = torch.zeros_like(weight, dtype=torch.bool)
        count = round(init_rate * mask.numel())
        mask.view(-1)[torch.topk(-grad.abs().view(-1), k=count).indices] = True
        fresh = torch.empty_like(weight)
        nn.init.kaiming_normal_(fresh, mode="fan_out", nonlinearity="relu")
        weight.copy_(torch.where(mask, fresh, weight))
        if module.bias is not None:
            bound = 1 / math.sqrt(weight[0].numel())  # nn.Conv2d's default bias initialisation
            module.bias.uniform_(-bound, bound)
        multipliers[f"{name}.weight"] = torch.where(mask, 1.0, kept_grad_scale).to(weight.dtype)
    return multipliers


def annealing_factor(epoch: int, epochs: int) -> float:
    """`LinearAnnealingLR` stepped once per epoch: epoch e (0-based) runs at s/A for s = e + 1 ≤ A, then
    (T − s)/(T − A), with A = (E + 1) // 2 and T = E + 1 (5 epochs: 1/3, 2/3, 1, 2/3, 1/3 of lr)."""
    step, annealing, total = epoch + 1, (epochs + 1) // 2, epochs + 1
    return step / annealing if step <= annealing else (total - step) / (total - annealing)


@METHODS.register("msg", check=check_msg)
def msg(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    check_msg(cfg)
    saliency_gradients(model, splits, cfg, ctx)
    torch.manual_seed(derive_seed(ctx.seed, "msg-reinit"))
    multipliers = reinitialise_small_gradients(model, cfg.init_rate, cfg.kept_grad_scale)
    model.zero_grad(set_to_none=True)
    parameters = dict(model.named_parameters())
    hooks = [parameters[name].register_hook(lambda grad, m=m: grad * m) for name, m in multipliers.items()]
    optimizer = sgd(model.parameters(), cfg)

    def step_lr(epoch: int) -> None:
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * annealing_factor(epoch, cfg.epochs)

    try:
        return run_epochs(model, cfg, ctx, "msg", lambda epoch: batches(splits.retain, cfg.batch_size, ctx),
                          bn="train", optimizer=optimizer, on_epoch=step_lr)
    finally:
        for hook in hooks:
            hook.remove()
