"""Models selected by `model.name`: a small CNN for CPU scale, ResNet-18 with the CIFAR stem, any timm model."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.checks import boolean, integer, keys_check, list_of, number
from unlearn_bench.errors import ConfigError
from unlearn_bench.registry import Registry

MODELS: Registry = Registry("model")


class SmallCNN(nn.Module):
    """conv-BN-ReLU blocks with a 2x2 max-pool after each block but the last, global average pool, linear."""

    pretrained_cfg = {"classifier": "fc"}  # noqa: RUF012 (timm's attribute, read-only)

    def __init__(self, in_chans: int, num_classes: int, widths: list[int], dropout: float = 0.0,
                 head_pool: int = 1):
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
        self.head_pool = head_pool  # 1: global average pool; k: a k x k grid of averages, flattened
        self.num_features = prev * head_pool * head_pool
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.dropout(torch.flatten(nn.functional.adaptive_avg_pool2d(x, self.head_pool), 1))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc


def integers(low: int):
    """A non-empty list of integers >= low (widths, channels per level)."""
    return list_of(integer(low), f"a non-empty list of integers >= {low}")


def mapping(key: str, value: object) -> None:
    if not isinstance(value, (dict, DictConfig)):
        raise ConfigError(key, value, "a mapping of timm.create_model keyword arguments ({} for none)")


def timm_arch(key: str, value: object) -> None:
    """A model name timm knows (checked before anything is built, with the closest names)."""
    import timm

    if not isinstance(value, str) or not timm.is_model(value):
        close = timm.list_models(f"*{str(value)[:4]}*")[:5] if isinstance(value, str) and value else []
        raise ConfigError(key, value, "a timm model name (timm.list_models())" + (f"; close: {', '.join(close)}"
                                                                                 if close else ""))



@MODELS.register("small_cnn", check=keys_check("model", {"widths": integers(1), "dropout": number(0.0, 1.0, high_open=True),
                                                     "head_pool": integer(1)}))
def small_cnn(cfg: DictConfig, in_chans: int, num_classes: int, image_size: int) -> nn.Module:
    pools = len(cfg.widths) - 1
    if image_size < 2**pools:
        raise ConfigError("model.widths", list(cfg.widths), f"at most {image_size.bit_length()} blocks for "
                          f"{image_size}x{image_size} inputs")
    head_pool = cfg.get("head_pool", 1)
    final_size = image_size // 2**pools
    if isinstance(head_pool, bool) or not isinstance(head_pool, int) or not 1 <= head_pool <= final_size:
        raise ConfigError("model.head_pool", head_pool, f"an integer in [1, {final_size}] (the last block's "
                          f"feature map is {final_size}x{final_size})")
    return SmallCNN(in_chans, num_classes, list(cfg.widths), cfg.get("dropout", 0.0), head_pool)


def _timm(arch: str, in_chans: int, num_classes: int, pretrained: bool, kwargs: dict) -> nn.Module:
    import timm

    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch[:4]}*")[:5]
        raise ConfigError("model.arch", arch, f"a timm model name (timm.list_models()); close: {', '.join(close)}")
    if not pretrained:
        return timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)
    return _pretrained(timm, arch, num_classes, in_chans, kwargs)


def _pretrained(timm, arch: str, num_classes: int, in_chans: int, kwargs: dict) -> nn.Module:
    """Pretrained weights from the local Hugging Face cache first; the hub only where it answers, so a
    machine without network gets one line at once instead of a minute of retries and a traceback."""
    import os
    import socket
    from unittest import mock

    try:  # huggingface_hub reads HF_HUB_OFFLINE once, at import: set its constant for this call
        with mock.patch.dict(os.environ, {"HF_HUB_OFFLINE": "1"}), \
                mock.patch("huggingface_hub.constants.HF_HUB_OFFLINE", True):
            return timm.create_model(arch, pretrained=True, num_classes=num_classes, in_chans=in_chans, **kwargs)
    except Exception as cached_err:  # not in the cache (or not loadable from it)
        reason = f"{type(cached_err).__name__}"
    if os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0"):
        reachable = False
    else:
        try:
            socket.create_connection(("huggingface.co", 443), timeout=3).close()
            reachable = True
        except OSError:
            reachable = False
    if not reachable:
        raise ConfigError("model.pretrained", True, f"false, or true where timm's weights for {arch} are in the "
                          f"local Hugging Face cache or the hub can be reached (neither here: {reason})")
    try:
        return timm.create_model(arch, pretrained=True, num_classes=num_classes, in_chans=in_chans, **kwargs)
    except Exception as err:
        raise ConfigError("model.pretrained", True, f"false (timm could not load the weights of {arch}: "
                          f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None


@MODELS.register("resnet18", check=keys_check("model", {"cifar_stem": boolean, "zero_init_last": boolean}))
def resnet18(cfg: DictConfig, in_chans: int, num_classes: int, image_size: int) -> nn.Module:
    """timm's ResNet-18 with the CIFAR stem of the papers: 3x3 stride-1 first conv, no max-pool; the last BN
    of each block initialised as the reference's (`zero_init_last` false) or zeroed (timm's default)."""
    model = _timm("resnet18", in_chans, num_classes, False, {"zero_init_last": bool(cfg.zero_init_last)})
    if cfg.cifar_stem:
        model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


@MODELS.register("timm", check=keys_check("model", {"arch": timm_arch, "pretrained": boolean, "kwargs": mapping}))
def timm_model(cfg: DictConfig, in_chans: int, num_classes: int, image_size: int) -> nn.Module:
    return _timm(cfg.arch, in_chans, num_classes, bool(cfg.pretrained), dict(cfg.get("kwargs") or {}))


@MODELS.register("ddpm_unet", check=keys_check("model", {"block_out_channels": integers(1), "layers_per_block": integer(1),
                                                     "norm_num_groups": integer(1)}))
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


def model_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's blocks in order, the classifier last: what "the last k layers" counts (CF-k, EU-k).
    The small CNN: one block per conv-BN; a ResNet: layer1..layer4 (as xcadet/deepunlearn's
    get_resnet_blocks); otherwise the top-level children that hold parameters."""
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(model, SmallCNN):
        convs = [i for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d)]
        blocks = [model.features[i:i + 2] for i in convs]  # conv + its batch norm
    elif all(hasattr(model, f"layer{k}") for k in range(1, 5)):
        blocks = [getattr(model, f"layer{k}") for k in range(1, 5)]
    else:
        blocks = [m for m in model.children() if m is not classifier and any(True for _ in m.parameters())]
    return [*blocks, classifier] if classifier is not None else blocks
