"""What the generation methods share: their context and the diffusion saliency mask."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from unlearn_bench.data import ImageData
from unlearn_bench.generation.diffusion import Diffusion, to_unit
from unlearn_bench.train import Context


@dataclass
class GenContext:
    ctx: Context
    diffusion: Diffusion
    forget_class: int
    retrain: tuple[nn.Module, dict] | None = None
    charged_seconds: float = 0.0


def diffusion_saliency_mask(model: nn.Module, forget: ImageData, diffusion: Diffusion, ratio: float,
                            batch_size: int) -> dict[str, torch.Tensor]:
    """|Σ ∇θ L_denoise(D_f)| ranked over all parameters; the top `ratio` share is 1 (SalUn for DDPM)."""
    model.train()
    model.zero_grad(set_to_none=True)
    for start in range(0, len(forget), batch_size):
        x0 = to_unit(forget.images[start:start + batch_size])
        diffusion.denoise_loss(model, x0, forget.labels[start:start + batch_size], label_dropout=0.0).backward()
    params = dict(model.named_parameters())
    saliency = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).abs().flatten()
                          for p in params.values()])
    model.zero_grad(set_to_none=True)
    flat = torch.zeros_like(saliency)
    flat[torch.topk(saliency, int(round(ratio * saliency.numel())), sorted=False).indices] = 1.0
    mask, offset = {}, 0
    for name, param in params.items():
        mask[name] = flat[offset:offset + param.numel()].view_as(param)
        offset += param.numel()
    model.eval()
    return mask
