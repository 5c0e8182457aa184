"""Scores of a model against the retrain model (docs/methods.md's metric columns), each registered by name: the
Tug-of-War of kairanzhao/RUM (surgical_plugins/analysis.py, analysis_mia.py), the Jensen-Shannon
divergence of the two models' output distributions on D_f, and their activation distance (mean L2
distance of the probability vectors on D_f). Higher ToW is better (1: the retrain model's accuracies);
lower JS / distance is better (0: the retrain model's outputs)."""

from __future__ import annotations

import torch

from unlearn_bench import tug_of_war as tug_of_war_values
from unlearn_bench.registry import Registry

COMPARISONS: Registry = Registry("comparison")


@COMPARISONS.register("ToW")
def tug_of_war(metrics: dict, retrain: dict, logits: torch.Tensor, retrain_logits: torch.Tensor) -> float:
    """(1 − da(D_f))·(1 − da(D_r))·(1 − da(T)), da = |accuracy − retrain's accuracy| as a fraction."""
    return tug_of_war_values.tug_of_war(metrics, retrain)


@COMPARISONS.register("ToW_MIA")
def tug_of_war_mia(metrics: dict, retrain: dict, logits: torch.Tensor, retrain_logits: torch.Tensor) -> float:
    """ToW with the MIA-efficacy difference in place of the forget accuracy's (RUM's analysis_mia.py)."""
    return tug_of_war_values.tug_of_war_mia(metrics, retrain)


def _probabilities(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(torch.nan_to_num(logits.double(), nan=0.0), dim=1)


@COMPARISONS.register("JS_forget")
def js_divergence(metrics: dict, retrain: dict, logits: torch.Tensor, retrain_logits: torch.Tensor) -> float:
    """Mean over D_f of JS(p_u, p_r) = ½ KL(p_u ‖ m) + ½ KL(p_r ‖ m), m = ½ (p_u + p_r), natural log."""
    if len(logits) == 0:
        return float("nan")
    p, q = _probabilities(logits), _probabilities(retrain_logits)
    m = 0.5 * (p + q)

    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * (torch.log(a.clamp_min(1e-300)) - torch.log(b.clamp_min(1e-300)))).sum(1)

    return float((0.5 * kl(p, m) + 0.5 * kl(q, m)).mean())


@COMPARISONS.register("activation_distance")
def activation_distance(metrics: dict, retrain: dict, logits: torch.Tensor, retrain_logits: torch.Tensor) -> float:
    """Mean over D_f of the L2 distance between the two models' probability vectors."""
    if len(logits) == 0:
        return float("nan")
    return float((_probabilities(logits) - _probabilities(retrain_logits)).norm(dim=1).mean())


def compare_to_retrain(metrics: dict, retrain: dict, logits: torch.Tensor, retrain_logits: torch.Tensor) -> dict[str, float]:
    return {name: COMPARISONS.get(name)(metrics, retrain, logits, retrain_logits) for name in COMPARISONS}
