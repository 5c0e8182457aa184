"""Training throughput of one model for each augmentation (the unlearn-bench-bench figures (a), (b), (c)): the
conventional per-sample PIL pipeline, the suite's batched on-device path and the model's pure step.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unlearn_bench.config import CONFIG_DIR
from unlearn_bench.data.augment import build_augment
from unlearn_bench.models import build_model

AUGMENTATIONS = ["none", "default", "trivialaug", "randaugment", "augmix"]
CIFAR10_EPOCH = 50_000  # training images per epoch of the paper recipe


def conventional_transform(name: str, aug_cfg, mean, std):
    """The reference pipeline: per-sample PIL transforms (torchvision v1 API, as the reference code)."""
    from torchvision import transforms as T

    steps = [] if name == "none" else [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]
    steps += {"none": [], "default": [], "trivialaug": [T.TrivialAugmentWide()],
              "randaugment": [T.RandAugment(num_ops=aug_cfg.get("num_ops", 2), magnitude=aug_cfg.get("magnitude", 9))],
              "augmix": [T.AugMix()]}[name]
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])


class PILDataset(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        from PIL import Image

        self.images = [Image.fromarray(img) for img in images]
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), int(self.labels[i])


def make_step(model: nn.Module, device: torch.device, amp: bool, channels_last: bool = False,
              graph_safe: bool = False):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    # autocast's weight-cast cache must be off inside a CUDA graph capture
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp, cache_enabled=not graph_safe)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        if channels_last:  # inputs in the weights' layout, as the runner's perf.channels_last does
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def new_model_step(model_cfg, device: torch.device, amp: bool, channels_last: bool, graph_safe: bool = False):
    """A freshly initialised model (the same weights every time: seed 0) and its training step."""
    torch.manual_seed(0)
    model = build_model(model_cfg, 3, 10, 32).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return make_step(model, device, amp, channels_last, graph_safe)


def pure_step_images(step, batch_size: int, steps: int, device: torch.device) -> float:
    """(c): images/s of `step` on pre-made tensors, no data work at all."""
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)

    def limit():
        while True:
            step(x, y)
            yield

    return timed_images(limit, steps, batch_size, device)


def timed_images(run_batches, steps: int, batch_size: int, device: torch.device, warmup: int = 3) -> float:
    """Images per second over `steps` steps after `warmup` steps."""
    iterator = run_batches()
    for _ in range(warmup):
        next(iterator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - start)


def bench_one(name: str, args, data, device, mean, std, model_cfg) -> dict:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        aug_cfg = compose("config", overrides=[f"augmentation={name}"]).augmentation
    images_np = data.train.images.permute(0, 2, 3, 1).numpy()
    labels_np = data.train.labels.numpy()
    mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)

    def new_step():
        return new_model_step(model_cfg, device, args.amp, args.channels_last)

    # (a) conventional
    step = new_step()
    loader = torch.utils.data.DataLoader(PILDataset(images_np, labels_np, conventional_transform(name, aug_cfg, mean, std)),
                                         batch_size=args.batch_size, shuffle=True, drop_last=True,
                                         num_workers=args.workers, pin_memory=device.type == "cuda",
                                         persistent_workers=args.workers > 0)

    def conventional():
        while True:
            for x, y in loader:
                step(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
                yield

    a = timed_images(conventional, args.steps, args.batch_size, device)

    # (b) suite path
    step = new_step()
    augment = build_augment(aug_cfg, 32, 3)
    gpu_images, gpu_labels = data.train.images.to(device), data.train.labels.to(device)

    def suite():
        while True:
            order = torch.randperm(len(gpu_labels), device=device)
            for s in range(0, len(order) - args.batch_size + 1, args.batch_size):
                index = order[s:s + args.batch_size]
                x = (augment(gpu_images[index]).float().div_(255.0) - mean_t) / std_t
                step(x, gpu_labels[index])
                yield

    b = timed_images(suite, args.steps, args.batch_size, device)

    c = pure_step_images(new_step(), args.batch_size, args.steps, device)  # (c) the model's limit
    return {"augmentation": name, "conventional_img_s": a, "suite_img_s": b, "limit_img_s": c,
            "conventional_s_per_epoch": CIFAR10_EPOCH / a, "suite_s_per_epoch": CIFAR10_EPOCH / b,
            "suite_over_conventional": b / a, "suite_over_limit": b / c}



def machine() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cores": os.cpu_count(),
            "cpu": platform.processor() or platform.machine()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info
