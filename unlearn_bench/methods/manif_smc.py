"""ManiF-SMC: representation-space unlearning with a triplet loss and adaptive margins from
self-mode connectivity (docs/manif.md, §13). Two variants (`method.variant`):

`published` (default): the code behind the published figures (wwq5-code/ManiF
On_MNIST/26Mar25/MNIST_Normal_distribution.py, `create_unlearning_with_topk_loader`,
`connect_determined_alpha`, `unlearning_with_topk`), term by term:
- c_n = mean of the L2-normalised θ_o features of x_n's k nearest retained samples (cosine); the positive
  p_n is the top-1 neighbour.
- per batch B of D_f: α_B = MSE(f_φ(x_B), c_B) − MSE(f_φ(x_pB), c_B), φ = (1 − t)·θ + t·(a fresh random
  network) over the parameters only (φ keeps the current model's BatchNorm buffers), recomputed every batch
  from the current model θ, run in train mode as the copied model is, no gradient;
- loss_B = clamp(loss_scale · (MSE(z_pB, c_B) − MSE(z_B, c_B) + α_B + CE(f(x_pB), y_B)), min=0): one hinge
  per batch, MSE the mean over batch and feature entries, and the CE of the positive's logits against
  the *erased* sample's label y_B, as the reference writes it.

`per_sample`: docs/manif.md's reading, the suite's earlier form:
1. For each erased sample x_n: S_k = its k nearest retained samples by cosine similarity of θ_o's
   penultimate features; anchor a_n = mean of their (unnormalised) θ_o features.
2. Triplet loss relu(d(a, z_p) − d(a, z_n) + α) per sample (d = squared L2, p drawn at random from S_k,
   z = the current model's features), all parameters, Adam.
3. α per erased sample, computed once from θ_o, from a model φ on a curve joining θ_u and θ_o:
   α = d(a, f_φ(x_n)) − d(a, f_φ(x_p)).

Switches of `per_sample` (null under `published`, which reads none of them):
- `direction`: away (the published code's sign: the erased sample is pushed away from its neighbours'
  centroid, the loss above) | toward (the paper's text: the erased sample is pulled to its nearest
  neighbours, relu(d(a, z_n) − d(a, z_p) + α)).
- `smc`: bezier (quadratic Bézier φ = ¼θ_u + ½w + ¼θ_o at t=½, control point w freshly initialised
  and trained on the neighbour sets with θ_u, θ_o frozen; reads `smc_epochs`, `smc_lr`,
  `smc_batch_size`) | blend (½θ_o + ½ a fresh random network over parameters and float buffers, once) |
  fixed (α = `margin`).
"""

from __future__ import annotations

import copy

import torch
from omegaconf import DictConfig
from torch import nn
from torch.func import functional_call
from tqdm.auto import tqdm

from unlearn_bench.batching import batch_indices
from unlearn_bench.checks import check_choices, check_positive, integer, number, positive
from unlearn_bench.context import Context
from unlearn_bench.data import ImageData, Splits
from unlearn_bench.errors import ConfigError
from unlearn_bench.methods._common import METHODS
from unlearn_bench.metrics.core import features_of
from unlearn_bench.models import penultimate_features
from unlearn_bench.rng import rng_aside

DIRECTIONS = ("away", "toward")
SMC_MODES = ("bezier", "blend", "fixed")


def chunked_knn(queries: torch.Tensor, keys: torch.Tensor, k: int, max_elements: int) -> torch.Tensor:
    """Indices (|Q|, k) of each query's k most cosine-similar keys. Similarities are computed in blocks
    of at most `max_elements` entries with a running top-k merge: never the full |Q| x |K| matrix."""
    if not 1 <= k <= len(keys):
        raise ConfigError("method.k", k, f"an integer in [1, {len(keys)}] (|D_r|)")
    q = nn.functional.normalize(queries, dim=1)
    kn = nn.functional.normalize(keys, dim=1)
    key_block = max(k, min(len(kn), max_elements))
    query_block = max(1, max_elements // key_block)
    result = []
    for qs in range(0, len(q), query_block):
        rows = q[qs:qs + query_block]
        best_sim = torch.full((len(rows), 0), float("-inf"), device=q.device)
        best_idx = torch.zeros((len(rows), 0), dtype=torch.long, device=q.device)
        for ks in range(0, len(kn), key_block):
            sims = rows @ kn[ks:ks + key_block].T
            top = sims.topk(min(k, sims.shape[1]), dim=1)
            merged_sim = torch.cat([best_sim, top.values], 1)
            merged_idx = torch.cat([best_idx, top.indices + ks], 1)
            keep = merged_sim.topk(min(k, merged_sim.shape[1]), dim=1)
            best_sim, best_idx = keep.values, merged_idx.gather(1, keep.indices)
        result.append(best_idx)
    return torch.cat(result)


def sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).sum(1)


def blended_model(theta_u: nn.Module, other: nn.Module) -> nn.Module:
    """½θ_u + ½·other over the whole state dict (parameters and float buffers): the published code's φ."""
    model = copy.deepcopy(theta_u)
    other_state = other.state_dict()
    model.load_state_dict({k: (0.5 * v + 0.5 * other_state[k]) if v.is_floating_point() else v
                           for k, v in theta_u.state_dict().items()})
    return model


def bezier_midpoint(theta_u: nn.Module, theta_o: nn.Module, fresh: nn.Module, neighbours: ImageData,
                    cfg: DictConfig, ctx: Context) -> nn.Module:
    """Train the control point w of φ = ¼θ_u + ½w + ¼θ_o on the neighbour samples (task loss), end
    points frozen; return φ with its BatchNorm statistics re-estimated on those samples."""
    ends = {name: (0.25 * pu.detach() + 0.25 * po.detach())
            for (name, pu), (_, po) in zip(theta_u.named_parameters(), theta_o.named_parameters())}
    w = dict(fresh.named_parameters())
    optimizer = torch.optim.Adam(w.values(), lr=cfg.smc_lr)
    fresh.train()
    for _ in range(cfg.smc_epochs):
        for index in batch_indices(len(neighbours), cfg.smc_batch_size, ctx.device):
            point = {name: ends[name] + 0.5 * w[name] for name in w}
            logits = functional_call(fresh, point, (ctx.inputs(neighbours.images[index]),))
            loss = nn.functional.cross_entropy(logits, neighbours.labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    phi = copy.deepcopy(fresh)
    with torch.no_grad():
        for name, param in phi.named_parameters():
            param.copy_(ends[name] + 0.5 * w[name])
    # BatchNorm statistics of φ (as SWA's update_bn): reset, then one pass in train mode
    for module in phi.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    phi.train()
    with torch.no_grad():
        for index in batch_indices(len(neighbours), ctx.eval_batch_size, ctx.device, shuffle=False):
            phi(ctx.inputs(neighbours.images[index], augment=False))
    return phi.eval()


def margins(theta_u: nn.Module, theta_o: nn.Module, splits: Splits, anchors: torch.Tensor,
            positives: torch.Tensor, neighbour_index: torch.Tensor, cfg: DictConfig, ctx: Context) -> torch.Tensor:
    """α_n = d(a_n, f_φ(x_n)) − d(a_n, f_φ(x_p)) for the chosen curve point φ (or the fixed margin)."""
    if cfg.smc not in SMC_MODES:
        raise ConfigError("method.smc", cfg.smc, SMC_MODES)
    if cfg.smc == "fixed":
        return torch.full((len(anchors),), float(cfg.margin), device=anchors.device)
    fresh = ctx.new_model()
    if cfg.smc == "blend":
        phi = blended_model(theta_u, fresh)
    else:
        neighbours = splits.retain.subset(torch.unique(neighbour_index.flatten()))
        phi = bezier_midpoint(theta_u, theta_o, fresh, neighbours, cfg, ctx)
    f_n = features_of(phi, splits.forget, ctx)
    f_p = features_of(phi, splits.retain.subset(positives), ctx)
    return sq_dist(anchors, f_n) - sq_dist(anchors, f_p)


VARIANTS = ("published", "per_sample")
PUBLISHED_KEYS = ("loss_scale", "t")
PER_SAMPLE_KEYS = ("direction", "smc", "margin", "smc_epochs", "smc_lr", "smc_batch_size")


def keys_read(cfg: DictConfig) -> tuple[str, ...]:
    """The variant-specific keys a run reads: every other one of PUBLISHED_KEYS + PER_SAMPLE_KEYS is null."""
    if cfg.get("variant") == "published":
        return PUBLISHED_KEYS
    smc = cfg.get("smc")
    return ("direction", "smc") + {"fixed": ("margin",), "bezier": ("smc_epochs", "smc_lr", "smc_batch_size")}.get(smc, ())


def check_manif_smc(cfg: DictConfig) -> None:
    check_positive(cfg, "method", ("k",))
    integer(1)("method.knn_max_elements", cfg.knn_max_elements)
    check_choices(cfg, "method", {"variant": VARIANTS})
    read = keys_read(cfg)
    for key in PUBLISHED_KEYS + PER_SAMPLE_KEYS:
        value = cfg.get(key)
        if key not in read and value is not None:
            raise ConfigError(f"method.{key}", value, f"null: variant={cfg.variant}"
                              + (f", smc={cfg.smc}" if cfg.variant == "per_sample" else "")
                              + " does not read it (the keys it reads: " + ", ".join(read) + ")")
    if cfg.variant == "published":
        positive("method.loss_scale", cfg.loss_scale)
        number(0.0, 1.0, low_open=True)("method.t", cfg.t)
        return
    check_choices(cfg, "method", {"smc": SMC_MODES, "direction": DIRECTIONS})
    if cfg.smc == "fixed":
        number()("method.margin", cfg.margin)
    if cfg.smc == "bezier":
        check_positive(cfg, "method", ("smc_epochs", "smc_lr", "smc_batch_size"))


def neighbour_anchors(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context):
    """θ_o's features of D_f and D_r and each erased sample's k nearest retained samples (cosine)."""
    forget_features = features_of(model, splits.forget, ctx)
    retain_features = features_of(model, splits.retain, ctx)
    neighbour_index = chunked_knn(forget_features, retain_features, cfg.k, cfg.knn_max_elements)
    return forget_features, retain_features, neighbour_index


def features_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z = penultimate_features(model, x)
    return z, model.get_classifier()(z)


def published_phi(model: nn.Module, fresh: nn.Module, t: float) -> nn.Module:
    """`linear_interpolate`: a copy of the current model whose parameters are (1 − t)·θ + t·fresh; its
    buffers (BatchNorm statistics) and its train/eval mode are the current model's, not blended."""
    phi = copy.deepcopy(model)
    with torch.no_grad():
        for p_phi, p_fresh in zip(phi.parameters(), fresh.parameters()):
            p_phi.copy_((1.0 - t) * p_phi + t * p_fresh)
    return phi


def published_margin(model: nn.Module, x: torch.Tensor, x_p: torch.Tensor, centres: torch.Tensor, t: float,
                     ctx: Context, step: int) -> torch.Tensor:
    """`connect_determined_alpha`, every batch: α = MSE(f_φ(x), c) − MSE(f_φ(x_p), c) for φ of the current
    model and a fresh random network (a new one per step, as the reference draws one per batch; drawn
    aside from the run's random stream), no gradient."""
    with rng_aside():
        fresh = ctx.new_model(f"manif-fresh-{step}")
    phi = published_phi(model, fresh.to(next(model.parameters()).device), t)
    with torch.no_grad():
        z, z_p = penultimate_features(phi, x), penultimate_features(phi, x_p)
        return nn.functional.mse_loss(z, centres) - nn.functional.mse_loss(z_p, centres)


def published_loss(model: nn.Module, x: torch.Tensor, x_p: torch.Tensor, labels: torch.Tensor,
                   centres: torch.Tensor, alpha: torch.Tensor, loss_scale: float) -> torch.Tensor:
    """`unlearning_with_topk`'s batch loss: clamp(s·(MSE(z_p, c) − MSE(z, c) + α + CE(f(x_p), y)), min=0)."""
    z = penultimate_features(model, x)
    z_p, logits_p = features_and_logits(model, x_p)
    ce = nn.functional.cross_entropy(logits_p, labels)  # the erased samples' labels, as the reference writes it
    loss = loss_scale * (nn.functional.mse_loss(z_p, centres) - nn.functional.mse_loss(z, centres) + alpha + ce)
    return torch.clamp(loss, min=0)


def manif_published(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    _, retain_features, neighbour_index = neighbour_anchors(model, splits, cfg, ctx)
    centres = nn.functional.normalize(retain_features, dim=1)[neighbour_index].mean(1)
    positives = neighbour_index[:, 0]  # chunked_knn orders each row by similarity: the top-1 neighbour
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    alphas = []
    model.train()
    for _ in tqdm(range(cfg.epochs), desc="manif_smc", disable=not ctx.progress, leave=False):
        for index in batch_indices(len(splits.forget), cfg.batch_size, ctx.device):
            x = ctx.inputs(splits.forget.images[index])
            x_p = ctx.inputs(splits.retain.images[positives[index]])
            alpha = published_margin(model, x, x_p, centres[index], cfg.t, ctx, len(alphas))
            loss = published_loss(model, x, x_p, splits.forget.labels[index], centres[index], alpha, cfg.loss_scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            alphas.append(alpha.detach())
    ctx.report.diagnostics["margins"] = torch.stack(alphas) if alphas else torch.zeros(0)
    model.eval()
    return model


def manif_per_sample(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    theta_o = copy.deepcopy(model).eval().requires_grad_(False)
    _, retain_features, neighbour_index = neighbour_anchors(theta_o, splits, cfg, ctx)
    anchors = retain_features[neighbour_index].mean(1)
    generator = torch.Generator().manual_seed(ctx.seed)
    pick = torch.randint(cfg.k, (len(neighbour_index),), generator=generator).to(neighbour_index.device)
    positives = neighbour_index.gather(1, pick[:, None]).squeeze(1)
    alpha = margins(copy.deepcopy(theta_o), theta_o, splits, anchors, positives, neighbour_index, cfg, ctx)
    ctx.report.diagnostics["margins"] = alpha

    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    for _ in tqdm(range(cfg.epochs), desc="manif_smc", disable=not ctx.progress, leave=False):
        model.train()
        for index in batch_indices(len(splits.forget), cfg.batch_size, ctx.device):
            z_n = penultimate_features(model, ctx.inputs(splits.forget.images[index]))
            z_p = penultimate_features(model, ctx.inputs(splits.retain.images[positives[index]]))
            d_p, d_n = sq_dist(anchors[index], z_p), sq_dist(anchors[index], z_n)
            gap = d_p - d_n if cfg.direction == "away" else d_n - d_p
            loss = nn.functional.relu(gap + alpha[index]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()
    return model


@METHODS.register("manif_smc", check=check_manif_smc)
def manif_smc(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    check_positive(cfg, "method", ("epochs", "lr", "batch_size"))
    check_manif_smc(cfg)
    return (manif_published if cfg.variant == "published" else manif_per_sample)(model, splits, cfg, ctx)
