"""DDPM with classifier-free guidance on diffusers' UNet2DModel and schedulers.

Class index `num_classes` is the null label: training drops the label with probability `label_dropout`,
sampling mixes conditional and unconditional noise predictions with the guidance scale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn
from tqdm.auto import tqdm

from unlearn_bench.batching import step_indices
from unlearn_bench.data import ImageData
from unlearn_bench.errors import ConfigError

SCHEDULES = ("linear", "squaredcos_cap_v2")
LINEAR_BETAS_AT_1000 = (1e-4, 0.02)  # DDPM's linear schedule, defined for 1,000 steps


@dataclass
class Diffusion:
    """The noise schedule and the sampler of one run."""

    train_scheduler: object
    num_classes: int
    cfg: DictConfig

    @classmethod
    def create(cls, cfg: DictConfig, num_classes: int) -> Diffusion:
        from diffusers import DDPMScheduler

        if cfg.beta_schedule not in SCHEDULES:
            raise ConfigError("generation.beta_schedule", cfg.beta_schedule, SCHEDULES)
        scheduler = DDPMScheduler(num_train_timesteps=cfg.timesteps, beta_schedule=cfg.beta_schedule,
                                  **cls.beta_range(cfg))
        return cls(scheduler, num_classes, cfg)

    @staticmethod
    def beta_range(cfg: DictConfig) -> dict[str, float]:
        """The linear schedule's betas scaled by 1000 / timesteps (as in improved DDPM): with the 1,000-step
        betas over fewer steps, x_T would keep a third of the image and sampling from pure noise would fail."""
        if cfg.beta_schedule != "linear":
            return {}
        scale = 1000.0 / cfg.timesteps
        return {"beta_start": LINEAR_BETAS_AT_1000[0] * scale, "beta_end": min(LINEAR_BETAS_AT_1000[1] * scale, 0.999)}

    def terminal_signal(self) -> float:
        """sqrt(ᾱ_T): how much of the image is left at the last step (sampling assumes about none)."""
        return float(self.train_scheduler.alphas_cumprod[-1].sqrt())

    def describe(self) -> dict:
        """What determines the noise schedule: part of the diffusion models' cache key."""
        return {"timesteps": self.cfg.timesteps, "beta_schedule": self.cfg.beta_schedule,
                "label_dropout": self.cfg.label_dropout, **self.beta_range(self.cfg)}

    def noised(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.cfg.timesteps, (len(x0),), device=x0.device)
        return self.train_scheduler.add_noise(x0, noise, t), t, noise

    def eps(self, model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return model(x_t, t, class_labels=labels).sample

    def denoise_loss(self, model: nn.Module, x0: torch.Tensor, labels: torch.Tensor,
                     label_dropout: float | None = None) -> torch.Tensor:
        """The standard ε-prediction loss; labels dropped to the null class for classifier-free guidance."""
        p = self.cfg.label_dropout if label_dropout is None else label_dropout
        drop = torch.rand(len(labels), device=labels.device) < p
        labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        x_t, t, noise = self.noised(x0)
        return nn.functional.mse_loss(self.eps(model, x_t, t, labels), noise)

    @torch.no_grad()
    def sample(self, model: nn.Module, labels: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
        """DDIM sampling with classifier-free guidance; returns images in [-1, 1]."""
        from diffusers import DDIMScheduler

        model.eval()
        scheduler = DDIMScheduler.from_config(self.train_scheduler.config)
        scheduler.set_timesteps(self.cfg.sample_steps)
        x = torch.randn(len(labels), *shape, device=labels.device)
        null = torch.full_like(labels, self.num_classes)
        w = self.cfg.guidance_scale
        for t in scheduler.timesteps:
            t_batch = t.expand(len(labels)).to(labels.device)
            eps = model(torch.cat([x, x]), torch.cat([t_batch, t_batch]),
                        class_labels=torch.cat([labels, null])).sample
            cond, uncond = eps.chunk(2)
            x = scheduler.step(uncond + w * (cond - uncond), t, x).prev_sample
        return x.clamp(-1.0, 1.0)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> [-1, 1] float, the diffusion model's range."""
    return images.float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def image_batches(data: ImageData, batch_size: int, steps: int, device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`steps` shuffled batches in the diffusion model's [-1, 1] range, cycling through the data."""
    for index in step_indices(len(data), batch_size, steps, device):
        yield to_unit(data.images[index]), data.labels[index]


def plateaued(losses: list[float], window: int, rel_tol: float) -> bool:
    """True at the end of a window whose mean loss fell by less than `rel_tol` of the previous window's mean.
    Whole windows only: per-batch denoising losses are noisy (a random t each), means over a window are not."""
    if len(losses) < 2 * window or len(losses) % window:
        return False
    previous = sum(losses[-2 * window:-window]) / window
    last = sum(losses[-window:]) / window
    return previous - last < rel_tol * abs(previous)


def optimise(model: nn.Module, steps: int, lr: float, batches: Iterator, loss_fn: Callable, desc: str,
             progress: bool, step_fn: Callable | None = None, ema_decay: float | None = None,
             stop: Callable[[], bool] | None = None) -> float:
    """Adam over `steps` batches of `loss_fn(x, y)`; `step_fn(optimizer)` may replace optimizer.step()
    (SalUn's masked step). With `ema_decay` the model ends with the exponential moving average of its
    weights (DDPM's standard for sampling quality). `stop()`, asked after every step, ends training early.
    Returns the mean loss of the last tenth of the steps."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    average = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
               if ema_decay else None)
    model.train()
    losses = []
    for x, y in tqdm(batches, total=steps, desc=desc, disable=not progress, leave=False):
        loss = loss_fn(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        (step_fn or (lambda opt: opt.step()))(optimizer)
        if average is not None:
            average.update_parameters(model)
        losses.append(loss.item())
        if stop is not None and stop():
            break
    if average is not None:
        model.load_state_dict(average.module.state_dict())
    model.eval()
    tail = losses[-max(1, len(losses) // 10):]
    return float(sum(tail) / len(tail))
