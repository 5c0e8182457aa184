"""UA, RA, TA, MIA-Efficacy and the Average Gap to the retrained model (docs/protocol.md).

A model's logits on every set are computed once (large batches, inference mode, no augmentation); each
registered metric is then a cheap function of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.context import Context
from unlearn_bench.data import ImageData, Splits
from unlearn_bench.models import penultimate_features
from unlearn_bench.registry import Registry

METRICS: Registry = Registry("metric")


@dataclass
class Outputs:
    """Logits of one model on D_f, D_r, T and the test samples of a forgotten class."""

    forget: torch.Tensor
    retain: torch.Tensor
    test: torch.Tensor
    forget_test: torch.Tensor


@torch.inference_mode()
def logits_on(model: nn.Module, data: ImageData, ctx: Context) -> torch.Tensor:
    model.eval()
    chunks = [model(ctx.inputs(data.images[i:i + ctx.eval_batch_size], augment=False)).float().cpu()
              for i in range(0, len(data), ctx.eval_batch_size)]
    return torch.cat(chunks) if chunks else torch.zeros(0, ctx.num_classes)


@torch.inference_mode()
def features_of(model: nn.Module, data: ImageData, ctx: Context) -> torch.Tensor:
    """Penultimate features (the representation ManiF-SMC and the latent probe read), eval mode."""
    model.eval()
    return torch.cat([penultimate_features(model, ctx.inputs(data.images[i:i + ctx.eval_batch_size], augment=False))
                      for i in range(0, len(data), ctx.eval_batch_size)]).float()


def model_outputs(model: nn.Module, splits: Splits, ctx: Context) -> Outputs:
    return Outputs(*(logits_on(model, getattr(splits, name), ctx)
                     for name in ("forget", "retain", "test", "forget_test")))


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Percent correct; NaN logits (a diverged model) count as wrong, never as a crash."""
    if len(labels) == 0:
        return float("nan")
    correct = (logits.argmax(1) == labels.cpu()) & torch.isfinite(logits).all(1)
    return 100.0 * correct.float().mean().item()


def confidence(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Softmax probability of the true label: the MIA feature of docs/protocol.md."""
    probs = torch.softmax(logits.double(), 1).gather(1, labels.cpu()[:, None]).squeeze(1)
    return torch.nan_to_num(probs, nan=0.0).numpy()


@METRICS.register("UA")
def unlearning_accuracy(out: Outputs, splits: Splits, cfg: DictConfig, seed: int) -> float:
    return 100.0 - accuracy(out.forget, splits.forget.labels)


@METRICS.register("RA")
def retain_accuracy(out: Outputs, splits: Splits, cfg: DictConfig, seed: int) -> float:
    return accuracy(out.retain, splits.retain.labels)


@METRICS.register("TA")
def test_accuracy(out: Outputs, splits: Splits, cfg: DictConfig, seed: int) -> float:
    return accuracy(out.test, splits.test.labels)


@METRICS.register("forget_TA")
def forget_class_test_accuracy(out: Outputs, splits: Splits, cfg: DictConfig, seed: int) -> float | None:
    """Test accuracy on the forgotten class; None (left out of the record) in random-data forgetting."""
    return accuracy(out.forget_test, splits.forget_test.labels) if len(splits.forget_test) else None


@METRICS.register("forget_true_acc")
def forget_true_accuracy(out: Outputs, splits: Splits, cfg: DictConfig, seed: int) -> float | None:
    """Corrective unlearning: accuracy on D_f's true labels (before they were flipped); None elsewhere."""
    if splits.forget_true_labels is None:
        return None
    return accuracy(out.forget, splits.forget_true_labels)


@METRICS.register("MIA")
def mia_efficacy(out: Outputs, splits: Splits, cfg: DictConfig, seed: int) -> float:
    """Share of D_f an SVC on confidences, fitted on D_r (members) vs T (non-members), calls non-member."""
    n_shadow = min(len(splits.retain), len(splits.test))
    generator = torch.Generator().manual_seed(int(seed))
    shadow = torch.randperm(len(splits.retain), generator=generator)[:n_shadow]
    members = confidence(out.retain[shadow], splits.retain.labels.cpu()[shadow])
    attack = confidence_attack(members, confidence(out.test, splits.test.labels), cfg.mia)
    return non_member_share(attack, out.forget, splits.forget.labels)


def confidence_attack(members: np.ndarray, non_members: np.ndarray, mia_cfg: DictConfig):
    """The SVC of docs/protocol.md's MIA (the `metrics.mia` settings) fitted on true-label confidences."""
    from sklearn.svm import SVC

    svc = SVC(C=mia_cfg.C, gamma=mia_cfg.gamma, kernel=mia_cfg.kernel)
    svc.fit(np.concatenate([members, non_members])[:, None],
            np.concatenate([np.ones(len(members)), np.zeros(len(non_members))]))
    return svc


def non_member_share(attack, logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Percent of the examples the attack calls non-member."""
    return 100.0 * float(np.mean(attack.predict(confidence(logits, labels)[:, None]) == 0))


def metrics_of(out: Outputs, splits: Splits, cfg: DictConfig, seed: int) -> dict[str, float]:
    """`cfg.names` of one model's outputs; a metric that does not apply (None) is left out."""
    values = {name: METRICS.get(name)(out, splits, cfg, seed) for name in cfg.names}
    return {name: value for name, value in values.items() if value is not None}


def evaluate(model: nn.Module, splits: Splits, ctx: Context, cfg: DictConfig) -> dict[str, float]:
    return metrics_of(model_outputs(model, splits, ctx), splits, cfg, ctx.seed)


def avg_gap(metrics: dict[str, float], reference: dict[str, float], over: list[str]) -> float:
    """Mean absolute difference to the retrained model over `over` (UA, RA, TA, MIA): lower is better."""
    gaps = [abs(metrics[k] - reference[k]) for k in over]
    return float(sum(gaps) / len(gaps)) if all(math.isfinite(g) for g in gaps) else float("nan")
