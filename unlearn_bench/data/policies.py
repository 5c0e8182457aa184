"""Per-image augmentation policies (RandAugment, AutoAugment, TrivialAugmentWide, AugMix, RandomErasing)
applied to a whole uint8 batch at once.

torchvision.transforms.v2 applied to a batch tensor draws ONE op for the whole batch; the reference
pipelines draw per image. Here every image draws its own ops and magnitudes from the same spaces as
torchvision, the batch is grouped by op, and each op runs once on its group with a magnitude per image:
the colour ops broadcast a per-image factor (torchvision's formulas), the geometric ops share one
grid_sample with a per-image affine matrix (torchvision's matrices and grid); ops without a per-image
kernel fall back to torchvision's own kernel once per (op, magnitude) group.
"""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2._utils import _get_fill
from torchvision.transforms.v2.functional import _color as tv_color
from torchvision.transforms.v2.functional import _geometry as tv_geometry

from unlearn_bench.checks import boolean, choice, integer, items_of, keys_check, number, passes, shown
from unlearn_bench.errors import ConfigError

INTERPOLATIONS = {"nearest": InterpolationMode.NEAREST, "bilinear": InterpolationMode.BILINEAR}
GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")


def _column(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-image scalars as an (N, 1, 1, 1) float32 tensor on `like`'s device."""
    return values.to(torch.float32).view(-1, 1, 1, 1).to(like.device)


def _blend(image: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's uint8 _blend, image * r + other * (1 - r), with one ratio per image (float64 in)."""
    ratio, rest = _column(factor, image), _column(1.0 - factor, image)
    return _fused_add(image.mul(ratio), other, rest).clamp_(0, 255).to(image.dtype)


def _fused_add(base: torch.Tensor, other: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """float32 base + other * alpha rounded once, as torch's add(alpha=) kernel computes it (a fused
    multiply-add): the product of two float32 numbers is exact in float64."""
    return base.double().add_(other.double() * alpha.double()).float()


def _grayscale(image: torch.Tensor) -> torch.Tensor:
    return tv_color._rgb_to_grayscale_image(image, num_output_channels=1, preserve_dtype=False).floor_()


def _brightness(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return image.mul(_column(factor, image)).clamp_(0, 255).to(image.dtype)


def _saturation(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return image if image.shape[-3] == 1 else _blend(image, _grayscale(image), factor)


def _contrast(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    gray = _grayscale(image) if image.shape[-3] == 3 else image.to(torch.float32)
    return _blend(image, gray.mean(dim=(-3, -2, -1), keepdim=True), factor)


def _sharpness(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_sharpness (3x3 smoothing kernel, border kept) with one factor per image."""
    channels, height, width = image.shape[-3:]
    if height <= 2 or width <= 2:
        return image
    a, b = 1.0 / 13.0, 5.0 / 13.0
    kernel = torch.tensor([[a, a, a], [a, b, a], [a, a, a]], device=image.device).expand(channels, 1, 3, 3)
    output = image.to(torch.float32, copy=True)
    degenerate = torch.nn.functional.conv2d(output, kernel, groups=channels).round_()
    view = output[..., 1:-1, 1:-1]
    view.copy_(_fused_add(view, degenerate.sub_(view), _column(1.0 - factor, image)))
    return output.clamp_(0, 255).to(image.dtype)


def _posterize(image: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    bits = bits.to(torch.int64)
    masks = torch.where(bits >= 8, 255, ((1 << bits) - 1) << (8 - bits.clamp(max=8)))
    return image & masks.to(torch.uint8).view(-1, 1, 1, 1).to(image.device)


def _solarize(image: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    return torch.where(image >= _column(threshold, image), 255 - image, image)


# op name -> (kernel on a uint8 batch, per-image parameter from torchvision's magnitude), as its
# _apply_image_or_video_transform maps a magnitude to a functional call
COLOUR_KERNELS = {
    "Brightness": (_brightness, lambda m: 1.0 + m),
    "Color": (_saturation, lambda m: 1.0 + m),
    "Contrast": (_contrast, lambda m: 1.0 + m),
    "Sharpness": (_sharpness, lambda m: 1.0 + m),
    "Posterize": (_posterize, lambda m: m.trunc()),
    "Solarize": (_solarize, lambda m: 255.0 * m),
    "AutoContrast": (lambda image, _: F.autocontrast(image), lambda m: m),
    "Equalize": (lambda image, _: F.equalize(image), lambda m: m),
    "Invert": (lambda image, _: F.invert(image), lambda m: m),
}


def _inverse_affine(name: str, magnitude: float, height: int, width: int) -> list[float] | None:
    """torchvision's inverse affine matrix for one geometric op; None where torchvision takes an exact
    fast path instead (rotation by a multiple of 90 degrees)."""
    if name == "Rotate":
        angle = magnitude % 360
        if angle == 0 or angle == 180 or (height == width and angle in (90, 270)):
            return None
        return tv_geometry._get_inverse_affine_matrix([0.0, 0.0], -angle, [0.0, 0.0], 1.0, [0.0, 0.0])
    if name in ("ShearX", "ShearY"):
        shear = math.degrees(math.atan(magnitude))
        shear_xy = [shear, 0.0] if name == "ShearX" else [0.0, shear]
        return tv_geometry._get_inverse_affine_matrix([-0.5 * width, -0.5 * height], 0.0, [0.0, 0.0], 1.0,
                                                      shear_xy)
    shift = [float(int(magnitude)), 0.0] if name == "TranslateX" else [0.0, float(int(magnitude))]
    return tv_geometry._get_inverse_affine_matrix([0.0, 0.0], 0.0, shift, 1.0, [0.0, 0.0])


def _affine_batch(images: torch.Tensor, matrices: list[list[float]], interpolation: InterpolationMode,
                  fill) -> torch.Tensor:
    """torchvision's affine_image for a batch with one inverse matrix per image (one grid_sample)."""
    height, width = images.shape[-2:]
    theta = torch.tensor(matrices, dtype=torch.float32, device=images.device).view(-1, 2, 3)
    mode = tv_geometry._check_interpolation(interpolation).value
    return tv_geometry._apply_grid_transform(images, _affine_grids(theta, height, width), mode,
                                             fill=fill)


def _affine_grids(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """torchvision's _affine_grid for N matrices at once."""
    device, dtype = theta.device, theta.dtype
    base = torch.empty(1, height, width, 3, dtype=dtype, device=device)
    base[..., 0].copy_(torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, steps=width, device=device))
    base[..., 1].copy_(torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, steps=height,
                                      device=device).unsqueeze_(-1))
    base[..., 2].fill_(1)
    scaled = theta.transpose(1, 2).div(torch.tensor([0.5 * width, 0.5 * height], dtype=dtype, device=device))
    grids = base.view(1, height * width, 3).expand(len(theta), -1, -1).bmm(scaled)
    return grids.view(len(theta), height, width, 2)


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
        """Apply op[i] with magnitude mags[i] to image i (op -1: leave it): one kernel call per op, one
        grid_sample for all geometric ops."""
        op, mags = op.cpu(), mags.cpu().double()
        out = images.clone()
        height, width = images.shape[-2:]
        warp_index, warp_matrices, fallback = [], [], []
        for op_id in torch.unique(op).tolist():
            name = self.names[op_id] if op_id >= 0 else "Identity"
            if name == "Identity":
                continue
            members = torch.nonzero(op == op_id).flatten()
            if name in COLOUR_KERNELS:
                kernel, parameter = COLOUR_KERNELS[name]
                index = members.to(images.device)
                out[index] = kernel(images[index], parameter(mags[members]))
            elif name in GEOMETRIC:
                for i, magnitude in zip(members.tolist(), mags[members].tolist()):
                    matrix = _inverse_affine(name, magnitude, height, width)
                    if matrix is None:
                        fallback.append((i, name, magnitude))
                    else:
                        warp_index.append(i)
                        warp_matrices.append(matrix)
            else:
                fallback.extend((i, name, m) for i, m in zip(members.tolist(), mags[members].tolist()))
        if warp_index:
            index = torch.tensor(warp_index, device=images.device)
            out[index] = _affine_batch(images[index], warp_matrices, self.family.interpolation,
                                       _get_fill(self.family._fill, torch.Tensor))
        groups: dict[tuple[str, float], list[int]] = {}
        for i, name, magnitude in fallback:
            groups.setdefault((name, magnitude), []).append(i)
        for (name, magnitude), members in groups.items():
            index = torch.tensor(members, device=images.device)
            out[index] = self.family._apply_image_or_video_transform(
                images[index], name, magnitude, interpolation=self.family.interpolation, fill=self.family._fill)
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
        # draw every chain's ops first (in chain order), then run the chains side by side as one batch
        ops = [[None] * max_depth for _ in range(cfg.mixture_width)]
        mags = [[None] * max_depth for _ in range(cfg.mixture_width)]
        for chain in range(cfg.mixture_width):
            depth = (torch.full((b,), cfg.chain_depth) if cfg.chain_depth > 0
                     else torch.randint(1, 4, (b,)))  # per image, as torchvision draws per chain
            for step in range(max_depth):
                op = torch.randint(len(names), (b,))
                mags[chain][step] = space.magnitudes(op, torch.randint(cfg.severity, (b,)))
                op[depth <= step] = -1
                ops[chain][step] = op
        chains = images.repeat(cfg.mixture_width, 1, 1, 1)
        for step in range(max_depth):
            chains = space.apply(chains, torch.cat([ops[c][step] for c in range(cfg.mixture_width)]),
                                 torch.cat([mags[c][step] for c in range(cfg.mixture_width)]))
        for chain, aug in enumerate(chains.split(b)):
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




def interval(low: float, high: float, *, positive_only: bool = False):
    """A pair [a, b] with low <= a <= b <= high (a > 0 where asked): RandomErasing's scale and ratio."""
    def check(key: str, value: object) -> None:
        items = items_of(value)
        ok = items is not None and len(items) == 2 and all(passes(number(), v) for v in items)
        ok = ok and low <= items[0] <= items[1] <= high and (items[0] > 0 or not positive_only)
        if not ok:
            raise ConfigError(key, shown(value), f"[a, b] with {low:g} {'<' if positive_only else '<='} a <= b <= {high:g}")
    return check


# The keys of each policy, checked before any image is augmented (the crop + flip they all start with too).
# A setting that makes a policy the identity (RandAugment with no operation, erasing with p = 0) is refused: its
# records would name a pipeline that did not run (augmentation=default is that pipeline).
INTERPOLATION = choice(*INTERPOLATIONS)
CROP_FLIP = {"crop_padding": integer(0), "hflip_p": number(0.0, 1.0)}
POLICY_KEYS = {
    "randaugment": {"num_ops": integer(1), "magnitude": integer(0), "num_magnitude_bins": integer(2),
                    "interpolation": INTERPOLATION},
    "autoaugment": {"policy": choice("cifar10", "imagenet", "svhn"), "interpolation": INTERPOLATION},
    "trivialaug": {"num_magnitude_bins": integer(2), "interpolation": INTERPOLATION},
    "augmix": {"severity": integer(1, 10), "mixture_width": integer(1), "chain_depth": integer(-1),
               "alpha": number(0.0, low_open=True), "all_ops": boolean, "interpolation": INTERPOLATION},
    "random_erasing": {"p": number(0.0, 1.0, low_open=True), "scale": interval(0.0, 1.0, positive_only=True),
                       "ratio": interval(0.0, math.inf, positive_only=True), "value": number(0.0, 255.0)},
}


def check_policy(name: str):
    """The check an augmentation registers: crop + flip's keys, then its own, each in one line, then the rules
    across its keys."""
    def across(cfg: DictConfig) -> None:
        if name == "augmix" and cfg.chain_depth == 0:
            raise ConfigError("augmentation.chain_depth", 0, "-1 (a random depth of 1 to 3) or an integer >= 1")
        if name == "randaugment" and not cfg.magnitude < cfg.num_magnitude_bins:
            raise ConfigError("augmentation.magnitude", cfg.magnitude, f"an integer in [0, {cfg.num_magnitude_bins - 1}]")
    return keys_check("augmentation", {**CROP_FLIP, **POLICY_KEYS.get(name, {})}, across)
