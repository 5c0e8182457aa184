"""Per-image augmentation policies (RandAugment, AutoAugment, TrivialAugmentWide, AugMix, RandomErasing)
applied to a whole uint8 batch at once.

torchvision.transforms.v2 applied to a batch tensor draws ONE op for the whole batch; the reference
pipelines draw per image. Here every image draws its own ops and magnitudes from the same spaces as
torchvision, then the batch is grouped by (op, magnitude) and torchvision's own op kernels run once per
group, so the image processing is torchvision's and the randomness is per image.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torchvision.transforms import InterpolationMode, v2

from unlearn_bench.errors import ConfigError

INTERPOLATIONS = {"nearest": InterpolationMode.NEAREST, "bilinear": InterpolationMode.BILINEAR}


class OpSpace:
    """An augmentation space of torchvision (op name -> magnitude bins, signed) as tensors."""

    def __init__(self, family: v2.Transform, names: list[str], num_bins: int, height: int, width: int):
        self.family = family
        self.names = names
        table = torch.zeros(len(names), num_bins)
        self.signed = torch.zeros(len(names), dtype=torch.bool)
        for i, name in enumerate(names):
            magnitudes_fn, signed = family._AUGMENTATION_SPACE[name]
            magnitudes = magnitudes_fn(num_bins, height, width)
            if magnitudes is not None:
                table[i] = magnitudes.float()
            self.signed[i] = signed
        self.table = table

    def magnitudes(self, op: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
        """Per-image magnitude of op[i] at bin[i], negated with probability 1/2 for signed ops."""
        op_cpu, bins_cpu = op.clamp(min=0).cpu(), bins.cpu()
        mags = self.table[op_cpu, bins_cpu]
        flip = self.signed[op_cpu] & (torch.rand(len(op_cpu)) <= 0.5)
        return torch.where(flip, -mags, mags)

    def apply(self, images: torch.Tensor, op: torch.Tensor, mags: torch.Tensor) -> torch.Tensor:
        """Apply op[i] with magnitude mags[i] to image i (op -1: leave it), one kernel call per group."""
        op, mags = op.cpu(), mags.cpu()
        keys = torch.stack([op.double(), mags.double()], 1)
        groups, inverse = torch.unique(keys, dim=0, return_inverse=True)
        out = images.clone()
        for g, (op_id, magnitude) in enumerate(groups.tolist()):
            if op_id < 0:
                continue
            index = torch.nonzero(inverse == g).flatten().to(images.device)
            out[index] = self.family._apply_image_or_video_transform(
                images[index], self.names[int(op_id)], magnitude, interpolation=self.family.interpolation,
                fill=self.family._fill)
        return out


def _interpolation(cfg: DictConfig) -> InterpolationMode:
    name = cfg.get("interpolation", "nearest")
    if name not in INTERPOLATIONS:
        raise ConfigError("augmentation.interpolation", name, INTERPOLATIONS)
    return INTERPOLATIONS[name]


def trivial_augment(cfg: DictConfig, height: int, width: int):
    family = v2.TrivialAugmentWide(num_magnitude_bins=cfg.num_magnitude_bins, interpolation=_interpolation(cfg))
    space = OpSpace(family, list(family._AUGMENTATION_SPACE), cfg.num_magnitude_bins, height, width)

    def augment(images: torch.Tensor) -> torch.Tensor:
        b = images.shape[0]
        op = torch.randint(len(space.names), (b,))
        bins = torch.randint(cfg.num_magnitude_bins, (b,))
        return space.apply(images, op, space.magnitudes(op, bins))

    return augment


def rand_augment(cfg: DictConfig, height: int, width: int):
    if not 0 <= cfg.magnitude < cfg.num_magnitude_bins:
        raise ConfigError("augmentation.magnitude", cfg.magnitude, f"an integer in [0, {cfg.num_magnitude_bins - 1}]")
    family = v2.RandAugment(num_ops=cfg.num_ops, magnitude=cfg.magnitude, num_magnitude_bins=cfg.num_magnitude_bins,
                            interpolation=_interpolation(cfg))
    space = OpSpace(family, list(family._AUGMENTATION_SPACE), cfg.num_magnitude_bins, height, width)

    def augment(images: torch.Tensor) -> torch.Tensor:
        b = images.shape[0]
        for _ in range(cfg.num_ops):
            op = torch.randint(len(space.names), (b,))
            images = space.apply(images, op, space.magnitudes(op, torch.full((b,), cfg.magnitude)))
        return images

    return augment


def auto_augment(cfg: DictConfig, height: int, width: int):
    policies = {p.value: p for p in v2.AutoAugmentPolicy}
    if cfg.policy not in policies:
        raise ConfigError("augmentation.policy", cfg.policy, list(policies))
    family = v2.AutoAugment(policies[cfg.policy], interpolation=_interpolation(cfg))
    names = list(family._AUGMENTATION_SPACE)
    space = OpSpace(family, names, 10, height, width)  # AutoAugment's magnitudes use 10 bins
    ops = torch.tensor([[names.index(op) for op, _, _ in policy] for policy in family._policies])
    probs = torch.tensor([[p for _, p, _ in policy] for policy in family._policies])
    bins = torch.tensor([[m if m is not None else 0 for _, _, m in policy] for policy in family._policies])

    def augment(images: torch.Tensor) -> torch.Tensor:
        chosen = torch.randint(len(family._policies), (images.shape[0],))
        for step in range(ops.shape[1]):
            op = ops[chosen, step].clone()
            op[torch.rand(len(chosen)) > probs[chosen, step]] = -1
            images = space.apply(images, op, space.magnitudes(op, bins[chosen, step]))
        return images

    return augment


def aug_mix(cfg: DictConfig, height: int, width: int):
    family = v2.AugMix(severity=cfg.severity, mixture_width=cfg.mixture_width, chain_depth=cfg.chain_depth,
                       alpha=cfg.alpha, all_ops=cfg.all_ops, interpolation=_interpolation(cfg))
    names = list(family._AUGMENTATION_SPACE if cfg.all_ops else family._PARTIAL_AUGMENTATION_SPACE)
    space = OpSpace(family, names, family._PARAMETER_MAX, height, width)
    max_depth = cfg.chain_depth if cfg.chain_depth > 0 else 3

    def augment(images: torch.Tensor) -> torch.Tensor:
        b = images.shape[0]
        shape = (b, 1, 1, 1)
        m = torch.distributions.Dirichlet(torch.full((b, 2), float(cfg.alpha))).sample()
        weights = torch.distributions.Dirichlet(torch.full((b, cfg.mixture_width), float(cfg.alpha))).sample()
        weights = (weights * m[:, 1:]).to(images.device)
        mix = m[:, 0].to(images.device).view(shape) * images.float()
        for chain in range(cfg.mixture_width):
            depth = (torch.full((b,), cfg.chain_depth) if cfg.chain_depth > 0
                     else torch.randint(1, 4, (b,)))  # per image, as torchvision draws per chain
            aug = images
            for step in range(max_depth):
                op = torch.randint(len(names), (b,))
                mags = space.magnitudes(op, torch.randint(cfg.severity, (b,)))
                op[depth <= step] = -1
                aug = space.apply(aug, op, mags)
            mix += weights[:, chain].view(shape) * aug.float()
        return mix.to(images.dtype)

    return augment


def random_erasing(cfg: DictConfig, height: int, width: int, attempts: int = 10):
    """torchvision's RandomErasing per image, vectorised: up to `attempts` boxes are drawn per image and the
    first that fits is erased (as torchvision's retry loop); images with none that fits stay unchanged."""
    area = height * width
    log_ratio = torch.log(torch.tensor(list(cfg.ratio), dtype=torch.float))

    def augment(images: torch.Tensor) -> torch.Tensor:
        b = images.shape[0]
        erase = torch.rand(b) < cfg.p
        target = area * torch.empty(b, attempts).uniform_(cfg.scale[0], cfg.scale[1])
        aspect = torch.exp(torch.empty(b, attempts).uniform_(log_ratio[0].item(), log_ratio[1].item()))
        h = torch.round(torch.sqrt(target * aspect)).long()
        w = torch.round(torch.sqrt(target / aspect)).long()
        fits = (h < height) & (w < width)
        first = torch.where(fits.any(1), fits.float().argmax(1), torch.zeros(b, dtype=torch.long))
        erase &= fits.any(1)
        h, w = h.gather(1, first[:, None]).squeeze(1), w.gather(1, first[:, None]).squeeze(1)
        top = (torch.rand(b) * (height - h + 1).float()).long()
        left = (torch.rand(b) * (width - w + 1).float()).long()
        rows = torch.arange(height)[None, :]
        cols = torch.arange(width)[None, :]
        in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])
        in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])
        box = (in_rows[:, :, None] & in_cols[:, None, :] & erase[:, None, None]).to(images.device)
        return images.masked_fill(box[:, None], int(cfg.value))

    return augment


