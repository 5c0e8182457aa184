"""The protocol below every task (SPEC §1): the data and its splits, the device, the reference models
(the original on D, the retrain model and a second retrain model on D_r, cached) and the timing of a
stage. The classification cell, the generation cell and the pool evaluation build on it; it imports no
task and no entry point.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from unlearn_bench.cache import ModelCache
from unlearn_bench.data import Splits, load_dataset, make_splits
from unlearn_bench.data.augment import build_augment
from unlearn_bench.errors import ConfigError, UserError
from unlearn_bench.models import build_model
from unlearn_bench.perf import prepare_model
from unlearn_bench.perf import resolve as resolve_perf
from unlearn_bench.train import Context, fit, seed_stage

DEVICES = "auto, cpu, cuda, cuda:N"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError("device", name, DEVICES) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", name, "cpu or auto (no CUDA device is visible)")
    return device


def configure_torch(cfg: DictConfig) -> None:
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def data_digest(images, labels) -> str:
    """Fingerprint of a training set: a cache entry never outlives a change of the data under it."""
    digest = hashlib.sha256(images.cpu().numpy().tobytes())
    digest.update(labels.cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


@dataclass
class Cell:
    """Everything a cell's stages share: the splits on the device and the training context."""

    cfg: DictConfig
    splits: Splits
    ctx: Context
    channels: int

    def new_model(self, stage: str, seed: int | None = None) -> nn.Module:
        """A freshly initialised model, seeded per stage so cache hits leave later stages unchanged."""
        seed_stage(self.cfg.seed if seed is None else seed, f"{stage}-init")
        cfg = self.cfg
        model = build_model(cfg.model, self.channels, self.ctx.num_classes, cfg.dataset.image_size)
        return prepare_model(model.to(self.ctx.device), self.ctx.perf, self.ctx.device)


def prepare(cfg: DictConfig, cache_root: Path | None = None) -> Cell:
    """Load the data, select the forget set and build the context; validates the config on the way."""
    device = pick_device(cfg.device)
    configure_torch(cfg)
    dataset = load_dataset(cfg.dataset, Path(cfg.paths.data_root), cache_root)
    splits = make_splits(dataset, cfg.forget_rate, cfg.seed)
    augment = build_augment(cfg.augmentation, cfg.dataset.image_size, cfg.dataset.channels)
    channels = dataset.train.images.shape[1]
    mean, std = (torch.tensor(list(v), dtype=torch.float32) for v in (cfg.dataset.mean, cfg.dataset.std))
    if len(mean) != channels or len(std) != channels:
        raise ConfigError("dataset.mean/std", [list(cfg.dataset.mean), list(cfg.dataset.std)],
                          f"{channels} values each (one per channel)")
    ctx = Context(device=device, augment=augment, mean=mean.view(1, -1, 1, 1).to(device),
                  std=std.view(1, -1, 1, 1).to(device), num_classes=dataset.num_classes, seed=cfg.seed,
                  progress=bool(cfg.progress), eval_batch_size=cfg.metrics.eval_batch_size,
                  perf=resolve_perf(cfg.get("perf"), device))
    cell = Cell(cfg, splits.to(device, pin_memory=ctx.perf.pin_memory), ctx, channels)
    ctx.new_model = lambda: cell.new_model("fresh")
    return cell


REFERENCE_STAGES = ("original", "retrain", "retrain2")
TRAIN_KEYS = "train.lr, train.epochs, train.batch_size, train.weight_decay, train.scheduler"


def check_reference(stage: str, model: nn.Module, stats: dict, accuracy: float | None, majority: float | None) -> None:
    """A reference model that is not one (non-finite weights or loss, or no better than predicting the most
    frequent class of its own training data) is refused before it reaches the cache: every gap measured
    against it would be meaningless, and a broken retrain model would rank every method first."""
    problems = []
    if not all(torch.isfinite(p).all() for p in model.state_dict().values() if p.is_floating_point()):
        problems.append("non-finite weights")
    loss = stats.get("final_train_loss")
    if loss is not None and not math.isfinite(loss):
        problems.append(f"final training loss {loss}")
    if accuracy is not None and majority is not None and not accuracy > majority + CHANCE_MARGIN:
        problems.append(f"accuracy on its own training data {accuracy:.1f} % (chance: {majority:.1f} %)")
    if problems:
        raise UserError(f"the {stage} model is not usable ({'; '.join(problems)}); it was not cached. "
                        f"Check the training keys: {TRAIN_KEYS}")


CHANCE_MARGIN = 5.0  # points above the majority-class rate a reference model must reach on its training data


def reference_key_parts(cell: Cell, stage: str, seed: int, key_extra: dict | None = None) -> dict:
    """What determines a reference model's weights (its cache key): the data, model, recipe, augmentation,
    training seed and device, and for the retrain models the forget set."""
    cfg, splits = cell.cfg, cell.splits
    parts = {name: OmegaConf.to_container(cfg[name], resolve=True) for name in ("dataset", "model", "train", "augmentation")}
    parts.update(key_extra or {})
    if cell.ctx.perf.any():  # weights trained with a speed switch differ in the last bits: their own entry
        parts.update(perf=cell.ctx.perf.as_dict())
    parts.update(seed=int(seed), device=cell.ctx.device.type,
                 train_data=data_digest(splits.train.images, splits.train.labels))
    if stage != "original":
        parts.update(forget_index=data_digest(splits.forget_index, splits.forget_index))
    return parts


def reference_models(cell: Cell, cache: ModelCache, fit_fn=None, key_extra: dict | None = None,
                     seed: int | None = None, stages: tuple[str, ...] = REFERENCE_STAGES,
                     keep: bool = True, announce: bool = True) -> tuple[dict[str, nn.Module], dict[str, dict]]:
    """The original model (trained on D), the retrain model (on D_r) and a second retrain model on the same
    D_r with another training seed (initialisation and data order: the retrain floor of SPEC §8), trained or
    loaded from the cache. `fit_fn(model, data, stage)` replaces the classifier recipe (diffusion models);
    `key_extra` joins the key; `seed` (default: the run seed) seeds their initialisation and training;
    `stages` picks which of them a task needs; `keep=False` does not store new checkpoints (pool models);
    `announce=False` prints nothing (a pool's members are announced by the pool)."""
    cfg, splits = cell.cfg, cell.splits
    seed = cfg.seed if seed is None else int(seed)
    classifier = fit_fn is None
    fit_fn = fit_fn or (lambda model, data, stage: fit(model, data, cfg.train, cell.ctx, stage))
    available = {"original": splits.train, "retrain": splits.retain, "retrain2": splits.retain}
    models, metas = {}, {}
    for stage in stages:
        data = available[stage]

        def train(model: nn.Module, stage=stage, data=data) -> dict:
            seed_stage(seed, f"{stage}-train")  # retrain2: its own stage name, so its own init and data order
            stats = fit_fn(model, data, stage)
            accuracy = majority = None
            if classifier:
                from unlearn_bench.metrics.core import accuracy as percent_correct
                from unlearn_bench.metrics.core import logits_on

                accuracy = percent_correct(logits_on(model, data, cell.ctx), data.labels)
                majority = 100.0 * torch.bincount(data.labels.cpu()).max().item() / max(len(data), 1)
                stats = {**stats, "train_accuracy": accuracy}
            check_reference(stage, model, stats, accuracy, majority)
            return stats

        models[stage], metas[stage], hit = cache.get_or_train(stage, reference_key_parts(cell, stage, seed, key_extra),
                                                              lambda stage=stage: cell.new_model(stage, seed), train,
                                                              keep=keep)
        if announce:
            print(f"{stage}: {'cache hit' if hit else 'trained'} ({metas[stage]['key']}, "
                  f"{metas[stage]['train_seconds']:.1f} s to train)")
    return models, metas
