"""The blind tuning objective (docs/tuning.md, `eval=blind`): score an unlearned model without any retrain model,
on a validation split V that never overlaps the test images T that score the methods.

V is a seeded sample of the test images that `dataset.test_size` leaves out of T. The objective, in
percentage points (lower is better; 0 when the forget set looks like unseen data and nothing was lost):

    B = |acc(D_f) − acc(V)|                     forget accuracy like held-out accuracy
      + |MIA(D_f) − MIA(V_b)|                   the membership attack sees D_f as it sees unseen images
      + max(0, RA(θ_o) − RA(θ_u))               retain accuracy not below the original's
      + max(0, acc_{V}(θ_o) − acc_{V}(θ_u))     held-out accuracy not below the original's

MIA(X) is the share of X that an SVC on the true-label confidence (the suite's MIA settings), fitted on
D_r (members) against the first half of V (non-members, V_a), calls non-member; V_b is the other half, so
the attack is never scored on the images it was fitted on. The cell's own metrics never enter it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from unlearn_bench import tracking
from unlearn_bench.cache import ModelCache
from unlearn_bench.data import ImageData
from unlearn_bench.errors import UserError
from unlearn_bench.evaluation._common import EVALUATIONS
from unlearn_bench.methods import check_method
from unlearn_bench.metrics.core import accuracy, confidence, confidence_attack, logits_on, non_member_share
from unlearn_bench.protocol import method_references, prepare, reference_models, unlearn_once
from unlearn_bench.tracking import summary_table

PARTS = ("forget_gap", "mia_gap", "retain_loss", "validation_loss")


def validation_split(cfg: DictConfig, unused: ImageData | None, device: torch.device) -> ImageData:
    """A seeded sample of `eval.validation_size` of the test images that T does not contain (`unused`)."""
    size = int(cfg.eval.validation_size)
    if unused is None or len(unused) < size:
        available = 0 if unused is None else len(unused)
        raise UserError(f"eval.validation_size={size} needs that many test images outside T, and "
                        f"dataset.test_size={cfg.dataset.get('test_size')} leaves {available}; set dataset.test_size "
                        f"lower or eval.validation_size at most {available}")
    generator = torch.Generator().manual_seed(int(cfg.dataset.get("subset_seed", 0)) + 2)
    return unused.subset(torch.randperm(len(unused), generator=generator)[:size].sort().values).to(device)


def blind_parts(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], original: dict[str, float],
                mia_cfg: DictConfig) -> dict[str, float]:
    """The objective's terms from a model's logits on D_f, D_r and V (V split in halves a and b)."""
    half = len(labels["validation"]) // 2
    acc = {name: accuracy(logits[name], labels[name]) for name in ("forget", "retain", "validation")}
    attack = confidence_attack(confidence(logits["retain"], labels["retain"]),
                               confidence(logits["validation"][:half], labels["validation"][:half]), mia_cfg)
    values = {"acc_forget": acc["forget"], "acc_validation": acc["validation"], "RA": acc["retain"],
              "MIA_forget": non_member_share(attack, logits["forget"], labels["forget"]),
              "MIA_validation": non_member_share(attack, logits["validation"][half:], labels["validation"][half:])}
    values["forget_gap"] = abs(values["acc_forget"] - values["acc_validation"])
    values["mia_gap"] = abs(values["MIA_forget"] - values["MIA_validation"])
    values["retain_loss"] = max(0.0, original.get("RA", values["RA"]) - values["RA"])
    values["validation_loss"] = max(0.0, original.get("acc_validation", values["acc_validation"]) - values["acc_validation"])
    values["blind_objective"] = sum(values[p] for p in PARTS)
    return values


@EVALUATIONS.register("blind")
def run_blind(cfg: DictConfig, record_file: Path) -> dict:
    """The method once, scored by the blind objective; a record for the tuner (`task: blind`)."""
    method_fn = check_method(cfg.method)
    cache = ModelCache(Path(cfg.paths.cache_dir))
    cell = prepare(cfg, cache.root)
    validation = validation_split(cfg, cell.unused_test, cell.ctx.device)
    models, metas = reference_models(cell, cache, stages=("original",))
    splits, ctx = cell.splits, cell.ctx
    ctx.references = method_references(metas)
    run = unlearn_once(method_fn, models["original"], splits, cfg.method, ctx, cfg.seed)
    unlearned, seconds = run.model, run.seconds
    sets = {"forget": splits.forget, "retain": splits.retain, "validation": validation}
    labels = {name: data.labels.cpu() for name, data in sets.items()}

    def score(model, original: dict) -> dict:
        return blind_parts({name: logits_on(model, data, ctx) for name, data in sets.items()}, labels, original,
                           cfg.metrics.mia)

    original = score(models["original"], {})
    method = {**score(unlearned, original), "RTE": seconds}
    record = tracking.save_record(cfg, record_file, {
        "task": "blind", "metrics": method, "original_metrics": original,
        "diverged": run.diverged, "forget_size": len(splits.forget),
        "validation_size": len(validation),
        "models": {"original": {"key": metas["original"]["key"],
                                "train_seconds": metas["original"]["train_seconds"]}}},
        ctx, wandb_extra={"retrain_metrics": None})
    columns = ["blind_objective", *PARTS, "acc_forget", "acc_validation", "RA", "MIA_forget", "MIA_validation"]
    print(summary_table({cfg.method.name: method, "original": original}, columns))
    print(f"blind objective (no retrain model; V = {len(validation)} test images outside T): "
          f"{method['blind_objective']:.2f} for {cfg.method.name}, {original['blind_objective']:.2f} for doing nothing")
    print(f"record: {record_file}")
    return record
