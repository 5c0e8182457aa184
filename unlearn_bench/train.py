"""The training loop shared by the original model, the retrain model and the unlearning methods.

Data stay uint8 on the model's device; each batch is indexed, augmented in one batched call and
normalised there, so there is no per-sample Python in the loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from tqdm.auto import tqdm

from unlearn_bench.cache import atomic_write_bytes
from unlearn_bench.data import ImageData
from unlearn_bench.data.augment import Augment
from unlearn_bench.errors import ConfigError
from unlearn_bench.perf import Perf, prepare_inputs, training_model
from unlearn_bench.validate import integer, positive

SCHEDULERS = ("constant", "multistep", "cosine")


@dataclass
class Context:
    """What every training stage needs besides its own hyperparameters."""

    device: torch.device
    augment: Augment
    mean: torch.Tensor  # (1, C, 1, 1) float, on device
    std: torch.Tensor
    num_classes: int
    seed: int
    progress: bool = True
    eval_batch_size: int = 1024
    new_model: Callable[..., nn.Module] | None = None  # new_model(stage="fresh"): a freshly initialised model
    load_dataset: Callable[[str], object] | None = None  # another dataset by its conf/dataset name (SCAR's surrogate)
    extras: dict = field(default_factory=dict)
    perf: Perf = field(default_factory=Perf)

    def inputs(self, images: torch.Tensor, augment: bool = True) -> torch.Tensor:
        """uint8 batch -> normalised float batch; augmentation only where asked (never in evaluation)."""
        if augment:
            images = self.augment(images)
        return prepare_inputs(self.normalize(images.float().div_(255.0)), self.perf)

    def normalize(self, unit_images: torch.Tensor) -> torch.Tensor:
        """[0, 1] float images -> model inputs (attacks perturb in [0, 1] space, then normalise)."""
        return (unit_images - self.mean) / self.std


def derive_seed(seed: int, stage: str) -> int:
    """A per-stage seed, so a stage draws the same randomness whether earlier stages ran or hit the cache."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{stage}".encode()).digest()[:4], "little")


def seed_stage(seed: int, stage: str) -> None:
    derived = derive_seed(seed, stage)
    torch.manual_seed(derived)
    np.random.seed(derived)
    random.seed(derived)


@contextlib.contextmanager
def rng_aside() -> Iterator[None]:
    """Run a block that seeds its own draws (seed_stage) without moving the caller's random streams:
    torch (CPU), NumPy and Python's states are restored after it."""
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def batch_indices(n: int, batch_size: int, device: torch.device, shuffle: bool = True) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, device=device) if shuffle else torch.arange(n, device=device)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def step_indices(n: int, batch_size: int, steps: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Exactly `steps` shuffled index batches, cycling through the data as often as needed (step budgets)."""
    done = 0
    while done < steps:
        for index in batch_indices(n, batch_size, device):
            if done >= steps:
                return
            yield index
            done += 1


def batches(data: ImageData, batch_size: int, ctx: Context, *, augment: bool = True,
            shuffle: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for index in batch_indices(len(data), batch_size, ctx.device, shuffle):
        yield ctx.inputs(data.images[index], augment), data.labels[index]


COUNT_KEYS = ("epochs", "steps", "batch_size", "samples")  # counted, so integers


def check_positive(cfg: DictConfig, prefix: str, keys: tuple[str, ...]) -> None:
    """Budgets and learning rates, with the kinds the runner's validation uses: counts are integers >= 1,
    the rest finite numbers > 0. Functions called without the runner (tests, scripts) check here."""
    for key in keys:
        (integer(1) if key in COUNT_KEYS else positive)(f"{prefix}.{key}", cfg.get(key))


def check_choices(cfg: DictConfig, prefix: str, choices: dict[str, tuple]) -> None:
    for key, accepted in choices.items():
        if cfg.get(key) not in accepted:
            raise ConfigError(f"{prefix}.{key}", cfg.get(key), accepted)


def sgd(params, cfg: DictConfig, weight_decay: float | None = None) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay if weight_decay is None else weight_decay,
                           nesterov=bool(cfg.get("nesterov", False)) and cfg.momentum > 0)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: DictConfig, steps_per_epoch: int):
    """Per-step schedules; MultiStep milestones are fractions of training (the papers' 91/182 and 136/182)."""
    total = max(1, cfg.epochs * steps_per_epoch)
    kind = cfg.get("scheduler", "constant")
    if kind == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if kind == "multistep":
        milestones = [int(round(m * total)) for m in cfg.milestones]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=cfg.gamma)
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total)
    raise ConfigError("train.scheduler", kind, SCHEDULERS)


def rng_states() -> dict:
    """Every random stream a training epoch draws from (data order, augmentation, dropout)."""
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def fit(model: nn.Module, data: ImageData, cfg: DictConfig, ctx: Context, desc: str,
        record_examples: bool = False, resume: Path | None = None, checkpoint_every: int = 0) -> dict:
    """Standard supervised training (the recipe of docs/protocol.md); returns a few statistics for the record.
    `record_examples` adds `example_confidence`: each example's true-label probability averaged over the
    epochs, read from the training forward passes (the cheap memorisation proxy of docs/difficulty.md).

    `resume` with `checkpoint_every` = k > 0: every k epochs the whole training state (weights, optimiser,
    schedule, every random stream, the loss curve) is written atomically to `resume`, and a training that
    finds that file continues from it, so a run killed or preempted mid-way and started again ends with
    the weights an uninterrupted run gives, bit for bit. The file is removed once training ends."""
    check_positive(cfg, "train", ("epochs", "lr", "batch_size"))
    model.train()
    optimizer = sgd(model.parameters(), cfg)
    steps_per_epoch = -(-len(data) // cfg.batch_size)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.get("label_smoothing", 0.0))
    last_loss, curve = float("nan"), []
    forward = training_model(model, ctx.perf)
    confidence_sum = torch.zeros(len(data), dtype=torch.float64) if record_examples else None
    first_epoch = 0
    if resume is not None and checkpoint_every and resume.is_file():
        state = torch.load(resume, map_location="cpu", weights_only=False)  # our own file, written below
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        curve, first_epoch = state["curve"], state["epoch"]
        last_loss = curve[-1] if curve else last_loss
        if confidence_sum is not None:
            confidence_sum = state["confidence_sum"]
        set_rng_states(state["rng"])
        print(f"{desc}: resumed at epoch {first_epoch} of {cfg.epochs} from {resume}")
    bar = tqdm(range(first_epoch, cfg.epochs), desc=desc, disable=not ctx.progress, leave=False)
    for epoch in bar:
        total, seen = 0.0, 0
        for index in batch_indices(len(data), cfg.batch_size, ctx.device):  # what batches() yields, with indices
            x, y = ctx.inputs(data.images[index]), data.labels[index]
            logits = forward(x)
            loss = loss_fn(logits, y)
            if confidence_sum is not None:
                with torch.no_grad():
                    p_true = torch.softmax(logits.detach().double(), 1).gather(1, y[:, None]).squeeze(1)
                    confidence_sum.index_add_(0, index.cpu(), p_true.cpu())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(y)
            seen += len(y)
        last_loss = total / max(seen, 1)
        curve.append(last_loss)
        bar.set_postfix(loss=f"{last_loss:.4f}")
        if resume is not None and checkpoint_every and (epoch + 1) % checkpoint_every == 0 and epoch + 1 < cfg.epochs:
            buffer = io.BytesIO()
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "curve": curve, "epoch": epoch + 1,
                        "confidence_sum": confidence_sum, "rng": rng_states()}, buffer)
            atomic_write_bytes(resume, buffer.getvalue())
    if resume is not None:
        resume.unlink(missing_ok=True)
    model.eval()
    stats = {"final_train_loss": last_loss, "loss_curve": curve}
    if confidence_sum is not None:
        stats["example_confidence"] = (confidence_sum / max(cfg.epochs, 1)).tolist()
    return stats
