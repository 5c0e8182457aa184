"""One generation cell (docs/generation.md): original and retrain-without-c_f diffusion models (cached), an
unlearning method, the evaluation classifier's scores, and the DiMRA attack on the result."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from unlearn_bench import tracking
from unlearn_bench.cache import ModelCache
from unlearn_bench.errors import ConfigError
from unlearn_bench.evaluation._common import EVALUATIONS
from unlearn_bench.generation.common import GenContext
from unlearn_bench.generation.diffusion import Diffusion, image_batches, optimise, to_uint8
from unlearn_bench.generation.dimra import check_dimra, dimra
from unlearn_bench.generation.evaluate import classify, generation_metrics
from unlearn_bench.models import build_model
from unlearn_bench.rng import seed_stage
from unlearn_bench.train import fit

COLUMNS = ["UA", "acc_retained", "FD", "UA_dimra", "RTE"]


def train_diffusion(model: nn.Module, data, diffusion: Diffusion, cfg: DictConfig, progress: bool, desc: str) -> dict:
    loss = optimise(model, cfg.steps, cfg.lr, image_batches(data, cfg.batch_size, cfg.steps, data.labels.device),
                    lambda x, y: diffusion.denoise_loss(model, x, y), desc, progress, ema_decay=cfg.get("ema_decay"))
    return {"final_train_loss": loss}


def pixel_noise(max_std: float):
    """Gaussian pixel noise with a per-image std drawn from [0, max_std] (in units of the pixel range): the
    evaluation classifier then reads samples of a small, briefly trained DDPM, whose backgrounds are
    noisy, instead of calling every noisy image one class."""

    def augment(images: torch.Tensor) -> torch.Tensor:
        std = torch.rand(len(images), 1, 1, 1, device=images.device) * (max_std * 255.0)
        return (images.float() + std * torch.randn(images.shape, device=images.device)).round_().clamp_(0, 255).to(images.dtype)

    return augment


def evaluation_classifier(cell, cache: ModelCache) -> tuple[nn.Module, str]:
    """A classifier of real images, trained once per dataset (seed 0, whatever the run seed)."""
    cfg, splits = cell.cfg, cell.splits
    clf_cfg = cfg.generation.classifier

    def build() -> nn.Module:
        seed_stage(0, "eval-classifier-init")
        return build_model(OmegaConf.create({"name": "small_cnn", "widths": list(clf_cfg.widths)}), cell.channels,
                           cell.ctx.num_classes, cfg.dataset.image_size).to(cell.ctx.device)

    def train(model: nn.Module) -> dict:
        seed_stage(0, "eval-classifier-train")
        noise_std = clf_cfg.get("noise_std") or 0.0
        ctx = dataclasses.replace(cell.ctx, augment=pixel_noise(noise_std)) if noise_std > 0 else cell.ctx
        return fit(model, splits.train, clf_cfg, ctx, "eval classifier")

    from unlearn_bench.protocol import data_digest

    key = {"dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
           "classifier": OmegaConf.to_container(clf_cfg, resolve=True), "device": cell.ctx.device.type,
           "train_data": data_digest(splits.train.images, splits.train.labels)}
    model, meta, hit = cache.get_or_train("eval_classifier", key, build, train)
    print(f"eval classifier: {'cache hit' if hit else 'trained'} ({meta['key']})")
    return model.eval(), meta["key"]


def sample_grid(model: nn.Module, diffusion: Diffusion, cell, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_class` images of every class, from the same seeded noise for every model of the cell."""
    seed_stage(cell.cfg.seed, "sample")
    labels = torch.arange(cell.ctx.num_classes, device=cell.ctx.device).repeat_interleave(per_class)
    shape = tuple(cell.splits.train.images.shape[1:])
    images = torch.cat([to_uint8(diffusion.sample(model, labels[i:i + 500], shape))
                        for i in range(0, len(labels), 500)])
    return images, labels


def save_grid(images: torch.Tensor, per_class: int, path: Path, columns: int = 10) -> None:
    """One row per class, the first `columns` samples of each."""
    from torchvision.utils import save_image

    rows = images.view(-1, per_class, *images.shape[1:])[:, :columns].reshape(-1, *images.shape[1:]).float() / 255.0
    if rows.shape[-1] < 32:  # enlarge tiny images (8x8 digits) so the grid can be read
        rows = torch.nn.functional.interpolate(rows, scale_factor=32 // rows.shape[-1], mode="nearest")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(rows, str(path), nrow=min(columns, per_class), padding=2)


@EVALUATIONS.register("generation")
def run_generation(cfg: DictConfig, record_file: Path) -> dict:
    from unlearn_bench.methods import check_method
    from unlearn_bench.protocol import prepare, reference_models, unlearn_once

    if cfg.forget_rate.mode != "class":
        raise ConfigError("forget_rate", cfg.forget_rate.mode, "class (task=generation forgets one class)")
    method_fn = check_method(cfg.method)
    if cfg.attack.name == "dimra":
        check_dimra(cfg.attack)
    cache = ModelCache(Path(cfg.paths.cache_dir))
    cell = prepare(cfg, cache.root)
    gen = cfg.generation
    diffusion = Diffusion.create(gen, cell.ctx.num_classes)

    def fit_diffusion(model: nn.Module, data, stage: str) -> dict:
        return train_diffusion(model, data, diffusion, gen.train, cell.ctx.progress, stage)

    reference_seed = gen.get("reference_seed")
    floor = bool(gen.get("floor"))  # a second retrained model (another training seed): the retrain floor row
    second = ("retrain2",) if floor else ()
    models, metas = reference_models(cell, cache, fit_fn=fit_diffusion, seed=reference_seed,
                                     stages=("original", "retrain", *second),
                                     key_extra={"generation": OmegaConf.to_container(gen.train, resolve=True),
                                                "schedule": diffusion.describe()})
    classifier, classifier_key = evaluation_classifier(cell, cache)
    gctx = GenContext(cell.ctx, diffusion, int(cfg.forget_rate.class_id), retrain=(models["retrain"], metas["retrain"]))
    run = unlearn_once(method_fn, models["original"], cell.splits, cfg.method, gctx, cfg.seed)
    unlearned = run.model

    output_dir = Path(cfg.paths.output_dir) / "generation" / tracking.cell_id(cfg)
    # real reference images: the whole test set (the forgotten class is excluded inside the metric)
    real_images = torch.cat([cell.splits.test.images, cell.splits.forget_test.images])
    real_labels = torch.cat([cell.splits.test.labels, cell.splits.forget_test.labels])
    real_predictions, real_feats = classify(classifier, real_images, cell.ctx)  # once: every score reuses them
    classifier_test_acc = 100.0 * (real_predictions == real_labels.cpu()).float().mean().item()
    print(f"eval classifier: {classifier_test_acc:.2f} % on the real test images")

    def score(model: nn.Module, attack: bool, folder: Path) -> dict[str, float]:
        """Metrics of `model`'s samples (and of its DiMRA-attacked copy); grids written into `folder`."""
        images, labels = sample_grid(model, diffusion, cell, gen.samples_per_class)
        metrics = generation_metrics(classifier, images, labels, real_feats, real_labels, gctx.forget_class,
                                     cell.ctx)
        save_grid(images, gen.samples_per_class, folder / "samples.png")
        if attack:
            seed_stage(cfg.seed, "dimra")
            attacked = dimra(model, cell.splits, cfg.attack, diffusion, cfg.seed, cell.ctx.progress)
            images, labels = sample_grid(attacked, diffusion, cell, gen.samples_per_class)
            metrics["UA_dimra"] = generation_metrics(classifier, images, labels, real_feats, real_labels,
                                                     gctx.forget_class, cell.ctx)["UA"]
            save_grid(images, gen.samples_per_class, folder / "dimra.png")
        return metrics

    attack = cfg.attack.name == "dimra"
    output_dir.mkdir(parents=True, exist_ok=True)
    results = {"method": score(unlearned, attack, output_dir / "method")}
    sampling = {k: gen[k] for k in ("guidance_scale", "sample_steps", "samples_per_class")}
    for stage in ("retrain", "original", *second):  # shared by every method of the cell: computed once, cached
        stage_attack = attack and stage != "original"
        key = {"model": metas[stage]["key"], "sampling": sampling, "seed": cfg.seed, "classifier": classifier_key,
               "forget_class": gctx.forget_class,
               "attack": OmegaConf.to_container(cfg.attack, resolve=True) if stage_attack else None}
        results[stage], folder, _ = cache.get_or_compute(
            f"{stage}-gen-eval", key, lambda folder, m=models[stage], a=stage_attack: score(m, a, folder))
        (output_dir / stage).mkdir(exist_ok=True)
        for png in folder.glob("*.png"):
            shutil.copyfile(png, output_dir / stage / png.name)
    grids = {f"{name}{suffix}": output_dir / name / f"{file}.png" for name in ("method", "retrain", "original")
             for suffix, file in (("", "samples"), ("_dimra", "dimra")) if (output_dir / name / f"{file}.png").is_file()}
    results["method"]["RTE"] = run.seconds
    results["retrain"]["RTE"] = metas["retrain"]["train_seconds"]

    record = tracking.save_record(cfg, record_file, {
        "task": "generation", "metrics": results["method"], "retrain_metrics": results["retrain"],
        "original_metrics": results["original"], "diverged": run.diverged,
        **({"retrain2_metrics": results["retrain2"]} if floor else {}),
        "classifier_test_acc": classifier_test_acc,
        **({"method_steps": cell.ctx.report.diagnostics["method_steps"]}
           if "method_steps" in cell.ctx.report.diagnostics else {}),
        "grids": {k: str(v) for k, v in grids.items()}, "grid_classes": cell.ctx.num_classes,  # one row each
        "models": {stage: {"key": metas[stage]["key"], "train_seconds": metas[stage]["train_seconds"],
                           "machine": metas[stage].get("machine")} for stage in metas}}, cell.ctx)
    from unlearn_bench.tracking import summary_table

    rows = {cfg.method.name: results["method"], "retrain_gen": results["retrain"],
            **({"retrain floor": results["retrain2"]} if floor else {}), "original": results["original"]}
    print(summary_table(rows, [c for c in COLUMNS if any(c in r for r in rows.values())]))
    print(f"sample grids: {output_dir}")
    print(f"record: {record_file}")
    return record

