"""Weight-saliency masks (SalUn), shared by the classification and the diffusion methods."""

from __future__ import annotations

import torch
from torch import nn

from unlearn_bench.errors import ConfigError

Mask = dict[str, torch.Tensor]


def top_ratio_mask(model: nn.Module, ratio: float) -> Mask:
    """SalUn's weight-saliency mask from the gradients accumulated in `model`: |grad| ranked over all
    parameters at once, 1 for the top `ratio` share, 0 elsewhere (exactly round(ratio * n) ones)."""
    params = dict(model.named_parameters())
    saliency = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).abs().flatten()
                          for p in params.values()])
    flat = torch.zeros_like(saliency)
    flat[torch.topk(saliency, int(round(ratio * saliency.numel())), sorted=False).indices] = 1.0
    mask, offset = {}, 0
    for name, param in params.items():
        mask[name] = flat[offset:offset + param.numel()].view_as(param)
        offset += param.numel()
    return mask


def check_mask_ratio(ratio: object) -> None:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio <= 1.0:
        raise ConfigError("method.mask_ratio", ratio, "a number in (0, 1]")
