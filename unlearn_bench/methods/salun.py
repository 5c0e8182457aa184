"""SalUn: random-label unlearning restricted to the most salient weights for forgetting.

Mask: g = |Σ over D_f batches of ∇θ(−CE(θ_o(x), y))| (summed first, absolute value after), ranked over all
parameters at once; the top `ratio` share is 1. `mask_update: hold` (SalUn's RL.py at a6e89fd): masked-out
weights do not move at all, the mask zeroes their gradient after weight decay is folded in, so momentum and
decay never touch them; `gradient` (RUM's RL.py): the mask multiplies the gradient only, so weight decay and
momentum still move them.
"""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from unlearn_bench.batching import batches
from unlearn_bench.checks import check_choices
from unlearn_bench.context import Context
from unlearn_bench.data import Splits
from unlearn_bench.masks import check_mask_ratio, top_ratio_mask
from unlearn_bench.methods._common import MASK_UPDATES, METHODS, Mask
from unlearn_bench.methods.rl import check_rl, random_label_unlearning


def saliency_mask(model: nn.Module, splits: Splits, ratio: float, batch_size: int, ctx: Context) -> Mask:
    check_mask_ratio(ratio)
    model.eval()  # as the reference: BN running statistics are not updated by mask generation
    model.zero_grad(set_to_none=True)
    for x, y in batches(splits.forget, batch_size, ctx, shuffle=False):
        (-nn.functional.cross_entropy(model(x), y)).backward()  # gradients accumulate: the sum over batches
    mask = top_ratio_mask(model, ratio)
    model.zero_grad(set_to_none=True)
    return mask


def check_salun(cfg: DictConfig) -> None:
    check_mask_ratio(cfg.get("mask_ratio"))
    check_choices(cfg, "method", {"mask_update": MASK_UPDATES})
    check_rl(cfg)


@METHODS.register("salun", check=check_salun)
def salun(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    mask = saliency_mask(model, splits, cfg.mask_ratio, cfg.batch_size, ctx)
    ctx.report.diagnostics["saliency_mask"] = mask
    return random_label_unlearning(model, splits, cfg, ctx, "salun", mask=mask, mask_update=cfg.mask_update)
