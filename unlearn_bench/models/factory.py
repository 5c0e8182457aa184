"""Models selected by `model.name`: a small CNN for CPU scale, ResNet-18 with the CIFAR stem, any timm model."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.errors import ConfigError
from unlearn_bench.registry import Registry

MODELS: Registry = Registry("model")


class SmallCNN(nn.Module):
    """conv-BN-ReLU blocks with a 2x2 max-pool after each block but the last, global average pool, linear."""

    pretrained_cfg = {"classifier": "fc"}  # noqa: RUF012 (timm's attribute, read-only)

    def __init__(self, in_chans: int, num_classes: int, widths: list[int], dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_chans
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(prev, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            prev = width
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.num_features = prev
        self.fc = nn.Linear(prev, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.dropout(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc


@MODELS.register("small_cnn")
def small_cnn(cfg: DictConfig, in_chans: int, num_classes: int, image_size: int) -> nn.Module:
    pools = len(cfg.widths) - 1
    if image_size < 2**pools:
        raise ConfigError("model.widths", list(cfg.widths), f"at most {image_size.bit_length()} blocks for "
                          f"{image_size}x{image_size} inputs")
    return SmallCNN(in_chans, num_classes, list(cfg.widths), cfg.get("dropout", 0.0))


def _timm(arch: str, in_chans: int, num_classes: int, pretrained: bool, kwargs: dict) -> nn.Module:
    import timm

    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch[:4]}*")[:5]
        raise ConfigError("model.arch", arch, f"a timm model name (timm.list_models()); close: {', '.join(close)}")
    return timm.create_model(arch, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)


@MODELS.register("resnet18")
def resnet18(cfg: DictConfig, in_chans: int, num_classes: int, image_size: int) -> nn.Module:
    """timm's ResNet-18 with the CIFAR stem of the papers: 3x3 stride-1 first conv, no max-pool."""
    model = _timm("resnet18", in_chans, num_classes, False, {})
    if cfg.cifar_stem:
        model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


@MODELS.register("timm")
def timm_model(cfg: DictConfig, in_chans: int, num_classes: int, image_size: int) -> nn.Module:
    return _timm(cfg.arch, in_chans, num_classes, bool(cfg.pretrained), dict(cfg.get("kwargs") or {}))


@MODELS.register("ddpm_unet")
def ddpm_unet(cfg: DictConfig, in_chans: int, num_classes: int, image_size: int) -> nn.Module:
    from diffusers import UNet2DModel

    levels = len(cfg.block_out_channels)
    if image_size % 2 ** (levels - 1):
        raise ConfigError("model.block_out_channels", list(cfg.block_out_channels),
                          f"at most {levels - 1} halvings that divide the image size {image_size}")
    return UNet2DModel(sample_size=image_size, in_channels=in_chans, out_channels=in_chans,
                       block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
                       down_block_types=("DownBlock2D",) * levels, up_block_types=("UpBlock2D",) * levels,
                       norm_num_groups=cfg.norm_num_groups, num_class_embeds=num_classes + 1)


def build_model(cfg: DictConfig, in_chans: int, num_classes: int, image_size: int) -> nn.Module:
    return MODELS.get(cfg.name)(cfg, in_chans, num_classes, image_size)


def classifier_name(model: nn.Module) -> str:
    """Attribute name of the final linear layer (timm records it in pretrained_cfg)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return cfg.get("classifier", "fc")


def penultimate_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The representation just before the classifier, through timm's feature API."""
    return model.forward_head(model.forward_features(x), pre_logits=True)
