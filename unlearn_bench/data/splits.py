"""The protocol's sets: D (train), D_f (forget), D_r (retain), T (test, without the class in class-wise mode)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from unlearn_bench.data.datasets import ImageData, ImageDataset
from unlearn_bench.errors import ConfigError

FORGET_MODES = ("random", "class", "corrupted", "memorization", "subpopulation")
MODEL_DEPENDENT = ("memorization", "subpopulation")  # D_f is chosen with the original model (docs/difficulty.md)
STRATA = ("low", "mid", "high")


@dataclass
class Splits:
    train: ImageData
    forget: ImageData
    retain: ImageData
    test: ImageData  # T for TA: the forgotten class removed in class-wise mode
    forget_test: ImageData  # test samples of the forgotten class (empty in random mode)
    forget_index: torch.Tensor  # indices of D_f in D, sorted
    num_classes: int
    forget_true_labels: torch.Tensor | None = None  # corrupted mode: D_f's labels before they were flipped

    def to(self, device: torch.device | str, pin_memory: bool = False) -> Splits:
        moved = {k: (v.to(device, pin_memory) if isinstance(v, ImageData) else v) for k, v in vars(self).items()}
        return Splits(**moved)


def forget_count(cfg: DictConfig, n_train: int) -> int:
    """Size of a random forget set: `count` when given, else round(rate * |D|)."""
    if cfg.get("count") is not None:
        count = cfg.count
        if not isinstance(count, int) or not 1 <= count < n_train:
            raise ConfigError("forget_rate.count", count, f"an integer in [1, {n_train - 1}] (|D| = {n_train})")
        return count
    rate = cfg.rate
    if not isinstance(rate, (int, float)) or not 0.0 < rate < 1.0:
        raise ConfigError("forget_rate.rate", rate, "a number in the open interval (0, 1)")
    count = int(round(rate * n_train))
    if not 1 <= count < n_train:
        raise ConfigError("forget_rate.rate", rate, f"a rate leaving at least one sample in D_f and D_r (|D| = {n_train})")
    return count


def select_forget(labels: torch.Tensor, cfg: DictConfig, seed: int, num_classes: int) -> torch.Tensor:
    """Sorted indices of D_f: a deterministic function of (labels, forget config, seed)."""
    if cfg.mode not in FORGET_MODES:
        raise ConfigError("forget_rate.mode", cfg.mode, FORGET_MODES)
    if cfg.mode == "class":
        class_id = cfg.class_id
        if not isinstance(class_id, int) or not 0 <= class_id < num_classes:
            raise ConfigError("forget_rate.class_id", class_id, f"an integer in [0, {num_classes - 1}]")
        return torch.nonzero(labels.cpu() == class_id).flatten()
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(len(labels), generator=generator)
    return order[: forget_count(cfg, len(labels))].sort().values


def corrupt_labels(labels: torch.Tensor, share: float, seed: int, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sorted indices of the flipped samples, the labels with them flipped): a seeded `share` of the samples,
    each moved to a uniformly drawn other class, so every flipped label differs from the true one."""
    n = int(round(share * len(labels)))
    if not 1 <= n < len(labels):
        raise ConfigError("forget_rate.share", share, f"a share leaving at least one sample flipped and one clean "
                                                       f"(|D| = {len(labels)})")
    generator = torch.Generator().manual_seed(int(seed))
    index = torch.randperm(len(labels), generator=generator)[:n].sort().values
    flipped = labels.clone()
    shift = torch.randint(1, num_classes, (n,), generator=generator).to(labels.device)
    flipped[index.to(labels.device)] = (labels[index.to(labels.device)] + shift) % num_classes
    return index, flipped


def make_splits(dataset: ImageDataset, cfg: DictConfig, seed: int) -> Splits:
    if cfg.mode in MODEL_DEPENDENT:
        raise ValueError(f"forget_rate.mode={cfg.mode} is chosen with the original model: protocol.prepare does it")
    if cfg.mode == "corrupted":
        index, flipped = corrupt_labels(dataset.train.labels, cfg.share, seed, dataset.num_classes)
        train = ImageData(dataset.train.images, flipped)
        keep = torch.ones(len(train), dtype=torch.bool)
        keep[index] = False
        empty = dataset.test.subset(torch.zeros(0, dtype=torch.long))
        return Splits(train=train, forget=train.subset(index), retain=train.subset(keep), test=dataset.test,
                      forget_test=empty, forget_index=index, num_classes=dataset.num_classes,
                      forget_true_labels=dataset.train.labels[index.to(dataset.train.labels.device)].cpu())
    forget_index = select_forget(dataset.train.labels, cfg, seed, dataset.num_classes)
    keep = torch.ones(len(dataset.train), dtype=torch.bool)
    keep[forget_index] = False
    test, forget_test = dataset.test, dataset.test.subset(torch.zeros(0, dtype=torch.long))
    if cfg.mode == "class":
        in_class = dataset.test.labels == cfg.class_id
        test, forget_test = dataset.test.subset(~in_class), dataset.test.subset(in_class)
    return Splits(train=dataset.train, forget=dataset.train.subset(forget_index),
                  retain=dataset.train.subset(keep), test=test, forget_test=forget_test,
                  forget_index=forget_index, num_classes=dataset.num_classes)


def memorization_stratum(scores: torch.Tensor, cfg: DictConfig) -> torch.Tensor:
    """Sorted indices of D_f: the `count` (or rate × |D|) examples of the `stratum` of a memorisation score
    (higher = more memorised): the lowest, the ones around the median, or the highest."""
    n = forget_count(cfg, len(scores))
    order = torch.argsort(scores, stable=True)  # ascending memorisation
    start = {"low": 0, "mid": (len(scores) - n) // 2, "high": len(scores) - n}[cfg.stratum]
    return order[start:start + n].sort().values


def check_cluster_count(class_size: int, cfg: DictConfig) -> None:
    """k-means needs at least as many examples of the class as clusters."""
    if class_size < cfg.clusters:
        raise ConfigError("forget_rate.clusters", cfg.clusters, f"at most {class_size} (the examples of class "
                                                                f"{cfg.class_id} in D)")


def subpopulation_cluster(features: torch.Tensor, class_index: torch.Tensor, cfg: DictConfig, seed: int) -> torch.Tensor:
    """Sorted indices of D_f: one k-means cluster (scikit-learn) of the class's penultimate features. Clusters
    are numbered by size, 0 the largest, so `cluster` means the same whatever labels k-means assigns."""
    from sklearn.cluster import KMeans

    check_cluster_count(len(class_index), cfg)
    labels = KMeans(n_clusters=cfg.clusters, random_state=int(seed), n_init=10).fit_predict(features.double().numpy())
    sizes = torch.bincount(torch.from_numpy(labels), minlength=cfg.clusters)
    ranked = sorted(range(cfg.clusters), key=lambda c: (-int(sizes[c]), c))
    return class_index[torch.from_numpy(labels == ranked[cfg.cluster])].sort().values


def splits_from_index(dataset: ImageDataset, forget_index: torch.Tensor) -> Splits:
    """D_f = D[forget_index], D_r the rest, T whole (random-data forgetting's layout)."""
    keep = torch.ones(len(dataset.train), dtype=torch.bool)
    keep[forget_index] = False
    return Splits(train=dataset.train, forget=dataset.train.subset(forget_index), retain=dataset.train.subset(keep),
                  test=dataset.test, forget_test=dataset.test.subset(torch.zeros(0, dtype=torch.long)),
                  forget_index=forget_index, num_classes=dataset.num_classes)
