"""What the generation methods share: their context and the diffusion saliency mask."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from unlearn_bench.context import Context
from unlearn_bench.data import ImageData
from unlearn_bench.generation.diffusion import Diffusion, to_unit
from unlearn_bench.masks import top_ratio_mask


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
    mask = top_ratio_mask(model, ratio)
    model.zero_grad(set_to_none=True)
    model.eval()
    return mask
