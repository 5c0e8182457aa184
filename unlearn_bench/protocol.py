"""The protocol below every task (docs/protocol.md): the data and its splits, the device, the reference models
(the original on D, the retrain model and a second retrain model on D_r, cached) and the timing of a
stage. The classification cell, the generation cell and the pool evaluation build on it; it imports no
task and no entry point.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from unlearn_bench.cache import ModelCache
from unlearn_bench.context import Context, MethodReport, References
from unlearn_bench.data import ImageData, Splits, dataset_config, load_dataset, make_splits
from unlearn_bench.data.augment import build_augment
from unlearn_bench.data.splits import (
    MODEL_DEPENDENT,
    check_cluster_count,
    forget_count,
    memorization_stratum,
    splits_from_index,
    subpopulation_cluster,
)
from unlearn_bench.errors import ConfigError, UserError
from unlearn_bench.models import build_model
from unlearn_bench.perf import prepare_model
from unlearn_bench.perf import resolve as resolve_perf
from unlearn_bench.rng import derive_seed, seed_stage
from unlearn_bench.train import fit

DEVICES = "auto, cpu, cuda, cuda:N"


def stop_with_parent(poll_seconds: float = 1.0) -> None:
    """In a joblib (loky) worker, exit once the sweep's parent process is gone: a killed sweep must not
    leave workers training and writing records behind it. Records and cache entries are written
    atomically, so stopping anywhere loses only the cell in progress."""
    import multiprocessing
    import threading

    if not multiprocessing.current_process().name.startswith("LokyProcess") or getattr(stop_with_parent, "on", False):
        return
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(143)

    threading.Thread(target=watch, name="stop-with-parent", daemon=True).start()
    stop_with_parent.on = True


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
class Unlearned:
    """One run of a method: the model, its run-time efficiency (the update's wall seconds plus what the method
    charges for work it did outside them) and whether it diverged (a non-finite loss or weight)."""

    model: nn.Module
    seconds: float
    diverged: bool


def unlearn_once(method_fn, original: nn.Module, splits: Splits, method_cfg: DictConfig, ctx, seed: int) -> Unlearned:
    """The method once from a copy of θ_o on its own seed stage, timed and checked: what every evaluation
    mode runs (a pool runs it N times with N seeds)."""
    holder = ctx if hasattr(ctx, "report") else ctx.ctx  # a generation method's context wraps a Context
    holder.report = MethodReport()  # this run's own report, whatever ran in the context before
    seed_stage(seed, "unlearn")
    model, seconds = timed(method_fn, copy.deepcopy(original), splits, method_cfg, ctx)
    report = holder.report
    charged = report.charged_seconds + getattr(ctx, "charged_seconds", 0.0)
    diverged = report.diverged or not all(torch.isfinite(p).all() for p in model.parameters())
    return Unlearned(model, seconds + charged, diverged)


@dataclass
class Cell:
    """Everything a cell's stages share: the splits on the device and the training context."""

    cfg: DictConfig
    splits: Splits
    ctx: Context
    channels: int
    unused_test: ImageData | None = None  # test images a `test_size` subset leaves out (on the host), never in D

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
    model_dependent = cfg.forget_rate.mode in MODEL_DEPENDENT
    if model_dependent:
        check_model_dependent_sizes(dataset, cfg.forget_rate)  # before the original trains
    splits = splits_from_index(dataset, torch.zeros(0, dtype=torch.long)) if model_dependent else \
        make_splits(dataset, cfg.forget_rate, cfg.seed)
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
    cell = Cell(cfg, splits.to(device, pin_memory=ctx.perf.pin_memory), ctx, channels, dataset.unused_test)
    ctx.new_model = lambda stage="fresh": cell.new_model(stage)
    ctx.load_dataset = lambda name: load_dataset(dataset_config(name), Path(cfg.paths.data_root), cache_root)
    if model_dependent:  # D_f chosen with the original model (trained on D, or loaded from the cache)
        forget_index = model_dependent_forget_set(cell, dataset, ModelCache(cache_root or Path(cfg.paths.cache_dir)))
        cell.splits = splits_from_index(dataset, forget_index).to(device, pin_memory=ctx.perf.pin_memory)
    return cell


def check_model_dependent_sizes(dataset, cfg: DictConfig) -> None:
    """What can be checked of a memorisation stratum or a subpopulation before the original trains."""
    if cfg.mode == "memorization":
        forget_count(cfg, len(dataset.train))
    else:
        check_cluster_count(int((dataset.train.labels == cfg.class_id).sum()), cfg)


def model_dependent_forget_set(cell: Cell, dataset, cache: ModelCache) -> torch.Tensor:
    """docs/difficulty.md: a memorisation stratum (`score: proxy`, the true-label confidence averaged over the original's
    training epochs, recorded while it trained: memorisation = 1 − it) or one k-means cluster of the
    original's penultimate features inside one class."""
    cfg = cell.cfg.forget_rate
    models, metas = reference_models(cell, cache, stages=("original",))
    if cfg.mode == "memorization":
        if cfg.score == "feldman":
            scores = feldman_scores(cell, cache, cfg.halves)
        else:
            scores = 1.0 - torch.tensor(metas["original"]["example_confidence"], dtype=torch.float64)
        index = memorization_stratum(scores, cfg)
        print(f"forget set: the {cfg.stratum}-memorisation stratum ({cfg.score} score), {len(index)} examples, "
              f"memorisation {scores[index].min():.3f}-{scores[index].max():.3f} (D: median {scores.median():.3f})")
        return index
    from unlearn_bench.models import penultimate_features

    class_index = torch.nonzero(dataset.train.labels.cpu() == cfg.class_id).flatten()
    images = cell.splits.train.images[class_index.to(cell.splits.train.images.device)]
    model = models["original"].eval()
    with torch.inference_mode():
        features = torch.cat([penultimate_features(model, cell.ctx.inputs(images[i:i + 512], augment=False)).float().cpu()
                              for i in range(0, len(images), 512)])
    index = subpopulation_cluster(features, class_index, cfg, cell.cfg.seed)
    print(f"forget set: cluster {cfg.cluster} of {cfg.clusters} (by size) of class {cfg.class_id}, {len(index)} examples")
    return index


def complementary_halves(n: int, halves: int, seed: int) -> torch.Tensor:
    """(halves, n) membership: pairs of complementary random halves of n examples (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    member = torch.zeros(halves, n, dtype=torch.bool)
    for pair in range(halves // 2):
        order = torch.randperm(n, generator=generator)
        member[2 * pair, order[:n // 2]] = True
        member[2 * pair + 1, order[n // 2:]] = True
    return member


def feldman_scores(cell: Cell, cache: ModelCache, halves: int) -> torch.Tensor:
    """Feldman's memorisation estimate (docs/difficulty.md): mem(x) = acc(x | x ∈ S) − acc(x | x ∉ S) over `halves`
    models trained with the original's recipe, each on a half S of D; the halves come in complementary pairs
    (S, D∖S) drawn from the run seed, so every example is in exactly half of the models. Each half-model is
    cached like a reference model (stage `half`)."""
    from unlearn_bench.metrics.core import logits_on

    cfg, train_data = cell.cfg, cell.splits.train
    device = train_data.labels.device
    member = complementary_halves(len(train_data), halves, derive_seed(cfg.seed, "feldman-halves"))
    correct = torch.zeros(member.shape, dtype=torch.float64)
    for m in range(halves):
        data = train_data.subset(torch.nonzero(member[m]).flatten().to(device))

        def train(model: nn.Module, data=data, m=m) -> dict:
            seed_stage(cfg.seed, f"half{m}-train")
            return fit(model, data, cfg.train, cell.ctx, f"half {m + 1}/{halves}")

        key = reference_key_parts(cell, "original", cfg.seed, {"feldman_half": m, "halves": halves})
        key.pop("records", None)
        model, meta, hit = cache.get_or_train("half", key, lambda m=m: cell.new_model(f"half{m}"), train)
        print(f"half-model {m + 1}/{halves}: {'cache hit' if hit else 'trained'} ({meta['key']})")
        predicted = logits_on(model, train_data, cell.ctx).argmax(1)
        correct[m] = (predicted == train_data.labels.cpu()).double()
    inside = (correct * member).sum(0) / member.sum(0)
    outside = (correct * ~member).sum(0) / (~member).sum(0)
    return inside - outside


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


def own_original_parts(parts: dict) -> dict:
    """The key of the original a confidence-reading cell trained for itself before originals recorded it."""
    return {**parts, "records": "example_confidence"}


def original_key_parts(cell: Cell, cache: ModelCache, seed: int, key_extra: dict | None = None) -> dict:
    """The original's cache key. A classifier original records each example's confidence while it trains
    (read from the training passes: the weights are the same), so a cell that reads it (RUM, a memorisation
    stratum) shares the plain entry instead of training its own copy. An entry stored before originals recorded
    it has no `example_confidence`; such a cell then keeps to its own entry, keyed with `records`, as before,
    and so does a cell whose own entry exists already (its records name that key)."""
    parts = reference_key_parts(cell, "original", seed, key_extra)
    if not records_confidence(cell.cfg):
        return parts
    own = own_original_parts(parts)
    shared = cache.meta("original", parts)
    if shared is not None:
        return parts if "example_confidence" in shared else own
    return own if cache.meta("original", own) is not None else parts


def records_confidence(cfg: DictConfig) -> bool:
    """The original of a memorisation-stratum cell, or of a cell whose method reads it (its registry entry
    says so), records its per-example confidence while it trains (docs/difficulty.md's proxy score)."""
    from unlearn_bench.methods import METHODS

    proxy_stratum = cfg.forget_rate.get("mode") == "memorization" and cfg.forget_rate.get("score") != "feldman"
    return cfg.get("task", {}).get("name", "classification") == "classification" and (
        proxy_stratum or "example_confidence" in METHODS.uses(cfg.method.get("name")))


def method_references(metas: dict[str, dict], models: dict | None = None) -> References:
    """What a method may read from the reference models besides θ_o's weights: the retrain model where the
    cell has one, the original's per-example confidence where it recorded it (RUM)."""
    retrain = (models["retrain"], metas["retrain"]) if models and "retrain" in models else None
    return References(retrain=retrain, example_confidence=metas.get("original", {}).get("example_confidence"))


def reference_models(cell: Cell, cache: ModelCache, fit_fn=None, key_extra: dict | None = None,
                     seed: int | None = None, stages: tuple[str, ...] = REFERENCE_STAGES,
                     keep: bool = True, announce: bool = True) -> tuple[dict[str, nn.Module], dict[str, dict]]:
    """The original model (trained on D), the retrain model (on D_r) and a second retrain model on the same
    D_r with another training seed (initialisation and data order: the retrain floor of docs/statistics.md), trained or
    loaded from the cache. `fit_fn(model, data, stage)` replaces the classifier recipe (diffusion models);
    `key_extra` joins the key; `seed` (default: the run seed) seeds their initialisation and training;
    `stages` picks which of them a task needs; `keep=False` does not store new checkpoints (pool models);
    `announce=False` prints nothing (a pool's members are announced by the pool)."""
    cfg, splits = cell.cfg, cell.splits
    seed = cfg.seed if seed is None else int(seed)
    classifier = fit_fn is None
    records = records_confidence(cfg)
    every = int(cfg.get("checkpoint", {}).get("every_epochs", 0) or 0)  # classifier recipes only
    resumes: dict[str, Path] = {}  # stage -> where its preempted training continues from
    fit_fn = fit_fn or (lambda model, data, stage: fit(model, data, cfg.train, cell.ctx, stage,
                                                       record_examples=stage == "original",
                                                       resume=resumes.get(stage), checkpoint_every=every))
    available = {"original": splits.train, "retrain": splits.retain, "retrain2": splits.retain}
    models, metas = {}, {}
    for stage in stages:
        data = available[stage]
        parts = (original_key_parts(cell, cache, seed, key_extra) if stage == "original" and classifier
                 else reference_key_parts(cell, stage, seed, key_extra))
        if classifier and every:
            resumes[stage] = cache.resume_path(stage, parts)

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

        models[stage], metas[stage], hit = cache.get_or_train(stage, parts,
                                                              lambda stage=stage: cell.new_model(stage, seed), train,
                                                              keep=keep)
        if stage == "original" and classifier and records and "example_confidence" not in metas[stage]:
            # the shared entry was stored meanwhile by a run that did not record: this cell's own entry
            parts = own_original_parts(parts)
            if every:
                resumes[stage] = cache.resume_path(stage, parts)
            models[stage], metas[stage], hit = cache.get_or_train(stage, parts, lambda stage=stage: cell.new_model(stage, seed),
                                                                  train, keep=keep)
        if announce:
            print(f"{stage}: {'cache hit' if hit else 'trained'} ({metas[stage]['key']}, "
                  f"{metas[stage]['train_seconds']:.1f} s to train)")
    return models, metas
