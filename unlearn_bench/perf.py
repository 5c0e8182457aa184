"""Speed switches for CUDA: bf16 autocast, channels_last, torch.compile, pinned host memory.

They change how fast a cell runs, not what it measures, so they are not part of a cell's identity (a
record keeps the switches it ran with); a model trained with any of them on gets its own cache entry,
since the weights differ in the last bits. `auto` turns a switch on where the device is CUDA.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.errors import ConfigError

SWITCHES = ("amp", "channels_last", "compile", "pin_memory")


@dataclass(frozen=True)
class Perf:
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    pin_memory: bool = False

    def as_dict(self) -> dict[str, bool]:
        return asdict(self)

    def any(self) -> bool:
        return any(asdict(self).values())


def resolve(cfg: DictConfig | None, device: torch.device) -> Perf:
    """The `perf` block with every `auto` decided for this device."""
    values = {}
    for key in SWITCHES:
        value = (cfg or {}).get(key, "auto")
        if value == "auto":
            value = device.type == "cuda"
        if not isinstance(value, bool):
            raise ConfigError(f"perf.{key}", value, "auto, true or false")
        values[key] = value
    return Perf(**values)


_AUTOCAST_STACK: list[torch.autocast] = []


def _enter_autocast(device_type: str, module: nn.Module, args) -> None:
    context = torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    context.__enter__()
    _AUTOCAST_STACK.append(context)


def _leave_autocast(module: nn.Module, args, output):
    _AUTOCAST_STACK.pop().__exit__(None, None, None)
    if isinstance(output, torch.Tensor) and output.is_floating_point():
        return output.float()  # losses and metrics stay in float32
    return output


def prepare_model(model: nn.Module, perf: Perf, device: torch.device) -> nn.Module:
    """channels_last weights, and bf16 autocast around every forward of the whole model (hooks, so the
    model, its state_dict and its deep copies stay plain modules)."""
    if perf.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if perf.amp:
        model.register_forward_pre_hook(partial(_enter_autocast, device.type))
        model.register_forward_hook(_leave_autocast, always_call=True)
    return model


def prepare_inputs(x: torch.Tensor, perf: Perf) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if perf.channels_last and x.dim() == 4 else x


def training_model(model: nn.Module, perf: Perf) -> nn.Module:
    """What the training loop calls: the model itself, or its torch.compile'd wrapper (same parameters)."""
    return torch.compile(model) if perf.compile else model

