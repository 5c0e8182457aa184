"""Batched, on-device training augmentations on uint8 tensors, with per-image randomness.

Every pipeline maps a uint8 batch (B, C, H, W) to a uint8 batch of the same shape. It is applied in
every training stage (original, retrain, saliency mask, unlearning updates) and never in evaluation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from omegaconf import DictConfig

from unlearn_bench.data import policies
from unlearn_bench.registry import Registry

Augment = Callable[[torch.Tensor], torch.Tensor]
AUGMENTATIONS: Registry = Registry("augmentation")


def scaled_padding(padding: int, image_size: int, reference_size: int = 32) -> int:
    """The CIFAR recipe pads 4 px on 32 px images; keep the same fraction on 8x8 or 28x28 inputs."""
    return max(1, round(padding * image_size / reference_size)) if padding > 0 else 0


def random_crop(images: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad and crop back at an independent random offset per image, without a Python loop."""
    if padding == 0:
        return images
    b, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b, 1), device=images.device)
    dx = torch.randint(0, 2 * padding + 1, (b, 1), device=images.device)
    rows = (dy + torch.arange(h, device=images.device))[:, :, None]  # (B, H, 1)
    cols = (dx + torch.arange(w, device=images.device))[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_hflip(images: torch.Tensor, p: float) -> torch.Tensor:
    flip = torch.rand(images.shape[0], device=images.device) < p
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def crop_flip(cfg: DictConfig, image_size: int) -> Augment:
    padding = scaled_padding(cfg.crop_padding, image_size)

    def augment(images: torch.Tensor) -> torch.Tensor:
        return random_hflip(random_crop(images, padding), cfg.hflip_p)

    return augment


@AUGMENTATIONS.register("none")
def none(cfg: DictConfig, image_size: int, channels: int) -> Augment:
    return lambda images: images


@AUGMENTATIONS.register("default", check=policies.check_policy("default"))
def default(cfg: DictConfig, image_size: int, channels: int) -> Augment:
    return crop_flip(cfg, image_size)


def _policy_pipeline(policy_fn) -> Callable[[DictConfig, int, int], Augment]:
    """docs/augmentation.md: every pipeline but `none` is RandomCrop + HFlip followed by its own per-image policy."""

    def build(cfg: DictConfig, image_size: int, channels: int) -> Augment:
        crop, policy = crop_flip(cfg, image_size), policy_fn(cfg, image_size, image_size)
        return lambda images: policy(crop(images))

    return build


for _name, _policy in {"randaugment": policies.rand_augment, "autoaugment": policies.auto_augment,
                       "trivialaug": policies.trivial_augment, "augmix": policies.aug_mix,
                       "random_erasing": policies.random_erasing}.items():
    AUGMENTATIONS.register(_name, check=policies.check_policy(_name))(_policy_pipeline(_policy))


def build_augment(cfg: DictConfig, image_size: int, channels: int) -> Augment:
    return AUGMENTATIONS.get(cfg.name)(cfg, image_size, channels)
