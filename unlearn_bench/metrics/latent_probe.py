"""The published ManiF-SMC membership attack (docs/methods.md): an MLP probe on the latent representation.

Reference: wwq5-code/ManiF On_MNIST/26Mar25/MNIST_Normal_distribution.py (`get_membership_inf_model`,
`membership_inf_results`) @ 05c4e648a8a95bcf1d7b3a10e7fd53205ce0e098. The probe (Linear(d, 96), ReLU,
Linear(96, 1)) is fitted once, on the original model's latents, to tell a sample of D (members, 1) from a
sample of T (non-members, 0) with BCE and Adam; it is then applied to each scored model's latents of D_f,
and `MIA_latent` is the share of D_f it calls non-member (the accuracy the reference prints for D_f
labelled 0), in percent, comparable with docs/protocol.md's MIA-Efficacy. Non-members come from the whole test
split: T, the forgotten class's test images and the test images a `test_size` subset leaves out.

Departures, named: the latent is the classifier's penultimate features (the reference: its VIB's sampled
code); latents are taken in eval mode (the reference's copy runs in train mode, so its BatchNorm uses each
batch's statistics); the two samples have min(samples, |D|, |test split|) examples each (the reference:
5,000 each of MNIST's 60,000 / 10,000; a 2,500-image D gives 2,500 each); the samples, the probe's
initialisation and its batch order are seeded.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.batching import batch_indices
from unlearn_bench.checks import integer, positive
from unlearn_bench.context import Context
from unlearn_bench.data import ImageData, Splits
from unlearn_bench.errors import ConfigError
from unlearn_bench.metrics.core import features_of
from unlearn_bench.rng import derive_seed

PROBE_KEYS = {"samples": integer(1), "hidden": integer(1), "epochs": integer(1), "lr": positive,
              "batch_size": integer(1)}


def sample(data: ImageData, n: int, generator: torch.Generator) -> ImageData:
    return data.subset(torch.randperm(len(data), generator=generator)[:n].to(data.labels.device))


def fit_latent_probe(original: nn.Module, members_pool: ImageData, non_members_pool: ImageData, ctx: Context,
                     cfg: DictConfig, seed: int) -> nn.Module:
    """The probe on θ_o's latents: a seeded sample of D (D_f and D_r) against one of the test images (T, the
    forgotten class's test images and the test images a `test_size` subset leaves out: never D)."""
    generator = torch.Generator().manual_seed(derive_seed(seed, "latent_probe"))
    n = min(cfg.samples, len(members_pool), len(non_members_pool))
    members = features_of(original, sample(members_pool, n, generator), ctx)
    non_members = features_of(original, sample(non_members_pool, n, generator), ctx)
    x = torch.cat([members, non_members])
    y = torch.cat([torch.ones(n), torch.zeros(n)]).to(x.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "latent_probe_init"))
        probe = nn.Sequential(nn.Linear(x.shape[1], cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 1)).to(x.device)
        optimizer = torch.optim.Adam(probe.parameters(), lr=cfg.lr)
        for _ in range(cfg.epochs):
            for index in batch_indices(len(x), cfg.batch_size, x.device):
                loss = nn.functional.binary_cross_entropy_with_logits(probe(x[index]).squeeze(1), y[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return probe.eval()


@torch.inference_mode()
def latent_probe_mia(probe: nn.Module, model: nn.Module, splits: Splits, ctx: Context) -> float:
    """Percent of D_f whose latent (under `model`) the probe calls non-member."""
    logits = probe(features_of(model, splits.forget, ctx)).squeeze(1)
    return 100.0 * (logits < 0).float().mean().item()  # sigmoid < 0.5


def check_latent_probe(cfg: DictConfig) -> None:
    """`metrics.latent_probe`: null (off) or a mapping of exactly PROBE_KEYS; read by classification cells."""
    probe = cfg.metrics.get("latent_probe")
    if probe is None:
        return
    if not isinstance(probe, DictConfig):
        raise ConfigError("metrics.latent_probe", probe, "null or a mapping of " + ", ".join(PROBE_KEYS))
    for key in probe:
        if key not in PROBE_KEYS:
            raise ConfigError(f"metrics.latent_probe.{key}", probe[key], "a key of " + ", ".join(PROBE_KEYS))
    for key, check in PROBE_KEYS.items():
        check(f"metrics.latent_probe.{key}", probe.get(key))
    evaluation = cfg.get("eval")
    name = evaluation.get("name") if isinstance(evaluation, DictConfig) else evaluation
    if cfg.task.name != "classification" or name != "cell":
        raise ConfigError("metrics.latent_probe", "a mapping", "null unless task=classification and eval=cell "
                          "(the cell scores it)")
