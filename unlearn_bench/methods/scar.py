"""SCAR: distance-based unlearning with out-of-distribution surrogate data (jbonato1/SCAR,
src/Unlearning_methods.py `SCAR.run`, src/dsets.py `get_surrogate`).

Per class of D_r, the original's penultimate features after Tukey's transform (x^δ) give a mean and a
shrunk (twice), correlation-normalised covariance whose pseudo-inverse defines a Mahalanobis distance.
Each forget example is pulled toward its closest *other* class (fixed at the first epoch): loss_fgt =
λ1 · mean Mahalanobis distance (L2-normalised feature and mean). The rest of the model is held by
distillation on surrogate images from another dataset: loss_ret = λ2 · KL(student ‖ original / T). Adam,
`surrogate_steps` surrogate batches per forget batch, until D_f's accuracy falls below the target (after
the second epoch) or `epochs` run out.

Two modes, as the reference's, chosen by the forget set: random forgetting (the reference's HR) when
D_f's labels all still occur in D_r, class-wise (CR) when D_f is whole classes.
- HR: the surrogate is labelled with the original's argmax and drawn with inverse class-frequency
  weights (classes with fewer than 3 examples weigh as 5), its logits from the original computed once
  without augmentation; each forget example's distance is weighted by its class's current forget
  accuracy, zeroed below `class_threshold`; target = the original's test accuracy − `target_margin`.
- CR: the removed classes have no distribution; the surrogate is drawn uniformly (augmented) and its
  teacher logits computed per batch, dropping samples the original assigns to the removed class and
  setting the removed columns to the batch minimum; target = `class_target`.

Switches (conf/method/scar.yaml), the reference's behaviour first: `target_examples` half (the test accuracy
behind HR's target is measured on a seeded random half of T cut to whole batches, as dsets.py's
random_split and drop_last) | all; `extra_forward` true (after a forget batch's last step the reference's loop
runs one more train-mode forward on the forget batch and a surrogate batch before it breaks, which moves the
batch-norm statistics) | false; `forget_augment` false (dsets.py reads D_f with the test transform) | true
(the cell's augmentation on the forget batches).
"""

from __future__ import annotations

import copy

import torch
from omegaconf import DictConfig
from torch import nn

from unlearn_bench.checks import boolean, check_choices, check_positive, number
from unlearn_bench.context import Context
from unlearn_bench.data import ImageData, Splits
from unlearn_bench.errors import ConfigError
from unlearn_bench.methods._common import METHODS
from unlearn_bench.metrics.core import accuracy, features_of, logits_on
from unlearn_bench.models import penultimate_features
from unlearn_bench.rng import derive_seed

SURROGATES = ("fashion_mnist", "mnist", "cifar10", "digits", "gaussian_noise")
TARGET_EXAMPLES = ("half", "all")


def check_scar(cfg: DictConfig) -> None:
    if cfg.surrogate not in SURROGATES:
        raise ConfigError("method.surrogate", cfg.surrogate, SURROGATES)
    check_positive(cfg, "method", ("epochs", "lr", "batch_size", "surrogate_size", "surrogate_steps",
                                   "temperature", "delta"))
    for key in ("lambda_1", "lambda_2", "gamma_1", "gamma_2", "weight_decay", "target_margin"):
        number(0.0)(f"method.{key}", cfg[key])
    number(0.0, 1.0)("method.class_threshold", cfg.class_threshold)
    number(0.0, 1.0)("method.class_target", cfg.class_target)
    check_choices(cfg, "method", {"target_examples": TARGET_EXAMPLES})
    boolean("method.extra_forward", cfg.extra_forward)
    boolean("method.forget_augment", cfg.forget_augment)


def target_examples(test: ImageData, cfg: DictConfig, seed: int) -> ImageData:
    """The test examples behind HR's target accuracy. half: dsets.py's random_split(held_out, [0.5, 0.5])
    (the first part, ⌈n/2⌉ examples, in the split's order) read with drop_last at the method's batch size;
    a half smaller than one batch is kept whole (the reference would divide by zero)."""
    if cfg.target_examples == "all":
        return test
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(derive_seed(seed, "scar-target")))
    half = order[:(len(test) + 1) // 2]
    if len(half) >= cfg.batch_size:
        half = half[:len(half) // cfg.batch_size * cfg.batch_size]
    return test.subset(half.to(test.labels.device))


def shrink(cov: torch.Tensor, gamma_1: float, gamma_2: float) -> torch.Tensor:
    """`cov_mat_shrinkage`: add γ1·(mean variance) to the diagonal and γ2·(mean non-zero covariance) off it."""
    eye = torch.eye(cov.shape[0], device=cov.device, dtype=cov.dtype)
    v1 = torch.diagonal(cov).mean()
    off = cov.clone().fill_diagonal_(0.0)
    nonzero = off != 0.0
    v2 = (off * nonzero).sum() / nonzero.sum()
    return cov + gamma_1 * eye * v1 + gamma_2 * (1 - eye) * v2


def class_distributions(features: torch.Tensor, labels: torch.Tensor, classes: list[int],
                        cfg: DictConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class: the mean of x^δ and the pseudo-inverse of its shrunk (twice) correlation matrix."""
    means, inverses = [], []
    for c in classes:
        samples = features[labels == c].pow(cfg.delta)
        means.append(samples.mean(0))
        cov = shrink(shrink(torch.cov(samples.T), cfg.gamma_1, cfg.gamma_2), cfg.gamma_1, cfg.gamma_2)
        sigma = torch.sqrt(torch.diagonal(cov))
        inverses.append(torch.linalg.pinv(cov / (sigma[:, None] * sigma[None, :]), hermitian=True))  # symmetric: eigh
    return torch.stack(means), torch.stack(inverses)


def mahalanobis(features: torch.Tensor, means: torch.Tensor, inverses: torch.Tensor, delta: float) -> torch.Tensor:
    """(B, C) squared Mahalanobis distances between normalised x^δ and each normalised class mean."""
    diff = nn.functional.normalize(features.pow(delta), dim=-1)[:, None, :] - nn.functional.normalize(means, dim=-1)
    return torch.einsum("bcd,cde,bce->bc", diff, inverses, diff)


def distill(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """The reference's `distill`, its 1e-4 offsets included: KL(teacher ‖ student), batch mean."""
    log_student = nn.functional.log_softmax(student + 1e-4, dim=1)
    log_teacher = nn.functional.log_softmax(teacher + 1e-4, dim=1)
    return nn.functional.kl_div(log_student + 1e-4, log_teacher + 1e-4, reduction="batchmean", log_target=True)


def weighted_by_class(dists: torch.Tensor, labels: torch.Tensor, class_accuracy: torch.Tensor,
                      threshold: float) -> torch.Tensor:
    """Random forgetting: each forget example's distance times its class's current forget accuracy, zeroed
    for a class already below `threshold` (the reference's `vec_forg`)."""
    weights = torch.where(class_accuracy < threshold, torch.zeros_like(class_accuracy), class_accuracy)
    return dists * weights[labels]


@torch.no_grad()
def class_wise_teacher(original: nn.Module, x_s: torch.Tensor, removed: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-wise forgetting: the original's logits on a surrogate batch without the samples it assigns to
    the (first) removed class, the removed classes' columns set to the batch minimum; and the kept mask."""
    teacher = original(x_s)
    kept = teacher.argmax(1) != removed[0]
    teacher = teacher[kept]
    teacher[:, removed] = teacher.min()
    return teacher, kept


def surrogate_images(cfg: DictConfig, ctx: Context, shape: tuple[int, int, int]) -> torch.Tensor:
    """`surrogate_size` uint8 images of another dataset (its train split, a seeded sample) in the cell's
    channels and size, or seeded Gaussian pixel noise (mean 127.5, sd 63.75, clipped)."""
    generator = torch.Generator().manual_seed(derive_seed(ctx.seed, "scar-surrogate"))
    channels, size, _ = shape
    if cfg.surrogate == "gaussian_noise":
        noise = 127.5 + 63.75 * torch.randn((cfg.surrogate_size, channels, size, size), generator=generator)
        return noise.round().clamp(0, 255).to(torch.uint8)
    images = ctx.load_dataset(cfg.surrogate).train.images
    images = images[torch.randperm(len(images), generator=generator)[:cfg.surrogate_size]].float()
    if images.shape[1] != channels:  # grey -> RGB by repetition, RGB -> grey by the channel mean
        images = images.repeat(1, channels, 1, 1) if images.shape[1] == 1 else images.mean(1, keepdim=True)
    if images.shape[-1] != size:
        images = nn.functional.interpolate(images, size=(size, size), mode="bilinear", antialias=True,
                                           align_corners=False)
    return images.round().clamp(0, 255).to(torch.uint8)


def check_cell(cfg: DictConfig) -> None:
    """Its surrogate is another dataset, whose file exists before anything trains."""
    from pathlib import Path

    from unlearn_bench.data.datasets import check_available, dataset_config

    if cfg.method.surrogate == cfg.dataset.name:
        raise ConfigError("method.surrogate", cfg.method.surrogate, f"a dataset other than the cell's "
                          f"(dataset={cfg.dataset.name}): the surrogate stands for data from elsewhere")
    if cfg.method.surrogate != "gaussian_noise":
        check_available(dataset_config(cfg.method.surrogate), Path(cfg.paths.data_root))


@METHODS.register("scar", check=check_scar, check_cell=check_cell)
def scar(model: nn.Module, splits: Splits, cfg: DictConfig, ctx: Context) -> nn.Module:
    check_scar(cfg)
    device = splits.forget.labels.device
    forget_classes = torch.unique(splits.forget.labels).tolist()
    removed = [c for c in forget_classes if not (splits.retain.labels == c).any()]
    class_wise = bool(removed)
    original = copy.deepcopy(model).eval().requires_grad_(False)
    keep_classes = [c for c in range(ctx.num_classes) if c not in removed]
    means, inverses = class_distributions(features_of(original, splits.retain, ctx), splits.retain.labels,
                                          keep_classes, cfg)
    surrogate = ImageData(surrogate_images(cfg, ctx, tuple(splits.forget.images.shape[1:])).to(device),
                          torch.zeros(cfg.surrogate_size, dtype=torch.long, device=device))
    generator = torch.Generator().manual_seed(derive_seed(ctx.seed, "scar-batches"))
    if class_wise:
        target = cfg.class_target
        weights = torch.ones(len(surrogate))
    else:
        measured = target_examples(splits.test, cfg, ctx.seed)
        target = accuracy(logits_on(original, measured, ctx), measured.labels) / 100 - cfg.target_margin
        teacher_logits = logits_on(original, surrogate, ctx).to(device)
        pseudo = teacher_logits.argmax(1).cpu()
        counts = torch.bincount(pseudo, minlength=ctx.num_classes)[pseudo].float()
        counts[counts < 3] = 5
        weights = 1.0 / counts

    def forget_accuracy() -> tuple[float, torch.Tensor]:
        logits = logits_on(model, splits.forget, ctx)
        labels = splits.forget.labels.cpu()
        correct = logits.argmax(1) == labels
        per_class = torch.stack([correct[labels == c].float().mean() if (labels == c).any() else torch.tensor(float("nan"))
                                 for c in range(ctx.num_classes)])
        return correct.float().mean().item(), per_class.to(device)

    def steps():
        """(epoch, forget batch number, its inputs and labels, the step's surrogate indices, whether it is
        the extra forward only) in order: the forget set in fixed batches, `surrogate_steps` surrogate
        batches drawn for each, and one more for the extra forward where it is on."""
        drawn = cfg.surrogate_steps + int(cfg.extra_forward)
        for epoch in range(cfg.epochs):
            for n_batch, start in enumerate(range(0, len(splits.forget), cfg.batch_size)):
                x_f = ctx.inputs(splits.forget.images[start:start + cfg.batch_size], augment=cfg.forget_augment)
                y_f = splits.forget.labels[start:start + cfg.batch_size]
                draw = torch.multinomial(weights, cfg.batch_size * drawn, replacement=True,
                                         generator=generator).to(device)
                for step in range(drawn):
                    yield (epoch, n_batch, x_f, y_f, draw[step * cfg.batch_size:(step + 1) * cfg.batch_size],
                           step == cfg.surrogate_steps)

    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    closest: list[torch.Tensor] = []  # per forget batch: the closest other class, fixed in the first epoch
    class_weights = None
    for epoch, n_batch, x_f, y_f, index, extra in steps():
        if extra:  # forward passes only, in train mode: they move the batch-norm statistics, nothing else
            with torch.no_grad():
                penultimate_features(model, x_f)
                model(ctx.inputs(surrogate.images[index], augment=class_wise))
            continue
        dists = mahalanobis(penultimate_features(model, x_f), means, inverses, cfg.delta)
        if n_batch == len(closest):
            order = torch.argsort(dists, dim=1)
            # in class-wise mode the index is into the kept classes and compared with the label, as the
            # reference does
            closest.append(torch.where(order[:, 0] == y_f, order[:, 1], order[:, 0]))
        dists = dists[torch.arange(len(dists), device=device), closest[n_batch]]
        if class_weights is not None and not class_wise:
            dists = weighted_by_class(dists, y_f, class_weights, cfg.class_threshold)
        loss_forget = dists.mean() * cfg.lambda_1
        x_s = ctx.inputs(surrogate.images[index], augment=class_wise)
        student = model(x_s)
        if class_wise:
            teacher, kept = class_wise_teacher(original, x_s, removed)
            student = student[kept]
        else:
            teacher = teacher_logits[index]
        loss = distill(student, teacher / cfg.temperature) * cfg.lambda_2 + loss_forget
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        current, class_weights = forget_accuracy()
        model.train()
        if not torch.isfinite(loss):
            ctx.report.diverged = True
            break
        if current < target and epoch > 1:
            break
    model.eval()
    return model
