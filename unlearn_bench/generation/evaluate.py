"""Scoring generated images with a classifier trained once per dataset (cached): UA on the forgotten
class, accuracy and a Fréchet distance in the classifier's feature space on the retained classes."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from unlearn_bench.context import Context


@torch.inference_mode()
def classify(classifier: nn.Module, images_uint8: torch.Tensor, ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted labels, penultimate features) of uint8 images."""
    classifier.eval()
    preds, feats = [], []
    for i in range(0, len(images_uint8), ctx.eval_batch_size):
        x = ctx.inputs(images_uint8[i:i + ctx.eval_batch_size], augment=False)
        f = classifier.forward_features(x)
        preds.append(classifier.forward_head(f).argmax(1).cpu())
        feats.append(classifier.forward_head(f, pre_logits=True).double().cpu())
    return torch.cat(preds), torch.cat(feats)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||μa − μb||² + Tr(Σa + Σb − 2 (Σa Σb)^½) between two feature sets (rows are samples)."""
    from scipy import linalg

    a_np, b_np = a.double().numpy(), b.double().numpy()
    mu_a, mu_b = a_np.mean(0), b_np.mean(0)
    cov_a, cov_b = np.cov(a_np, rowvar=False), np.cov(b_np, rowvar=False)
    root, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    root = root.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2.0 * root))


def generation_metrics(classifier: nn.Module, generated: torch.Tensor, labels: torch.Tensor,
                       real_feats: torch.Tensor, real_labels: torch.Tensor, forget_class: int,
                       ctx: Context) -> dict[str, float]:
    """UA: % of images generated for c_f not classified c_f (higher = forgotten); acc_retained: % of
    retained-class images classified as their class; FD: Fréchet distance to real retained-class images,
    whose features (`classify` of the real images, computed once per cell) are `real_feats`."""
    preds, feats = classify(classifier, generated, ctx)
    labels, real_labels = labels.cpu(), real_labels.cpu()
    is_forget = labels == forget_class
    return {"UA": 100.0 * (preds[is_forget] != forget_class).float().mean().item(),
            "acc_retained": 100.0 * (preds[~is_forget] == labels[~is_forget]).float().mean().item(),
            "FD": frechet_distance(feats[~is_forget], real_feats[real_labels != forget_class])}
