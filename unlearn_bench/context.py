"""The training context: what every training stage needs besides its own hyperparameters (device, augmentation,
normalisation, seed, the model factory), what a method may read from the reference models (`References`) and
what it reports back besides its model (`MethodReport`): typed, so a method and the runner agree on names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from unlearn_bench.data.augment import Augment
from unlearn_bench.perf import Perf, prepare_inputs


@dataclass
class References:
    """What a method may read from the reference models besides θ_o's weights."""

    retrain: tuple[nn.Module, dict] | None = None  # the retrain model and its metadata (method=retrain returns it)
    example_confidence: list[float] | None = None  # the original's per-example confidence while it trained (RUM)


@dataclass
class MethodReport:
    """What a method reports besides its model: whether it diverged (a non-finite loss), seconds of work it
    did outside its timed update (the retrain model's training, for method=retrain), and diagnostics of its
    own (how many weights SSD dampened, RUM's steps per stratum, SalUn's mask, ...) that tests and records read."""

    diverged: bool = False
    charged_seconds: float = 0.0
    diagnostics: dict = field(default_factory=dict)


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
    references: References = field(default_factory=References)
    report: MethodReport = field(default_factory=MethodReport)
    perf: Perf = field(default_factory=Perf)

    def inputs(self, images: torch.Tensor, augment: bool = True) -> torch.Tensor:
        """uint8 batch -> normalised float batch; augmentation only where asked (never in evaluation)."""
        if augment:
            images = self.augment(images)
        return prepare_inputs(self.normalize(images.float().div_(255.0)), self.perf)

    def normalize(self, unit_images: torch.Tensor) -> torch.Tensor:
        """[0, 1] float images -> model inputs (attacks perturb in [0, 1] space, then normalise)."""
        return (unit_images - self.mean) / self.std
