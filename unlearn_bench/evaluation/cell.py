"""The classification cell (docs/protocol.md): a method maps the original model to an unlearned one, which is scored
against the retrain model beside the retrain floor and doing nothing, and written as one record."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from torch import nn

from unlearn_bench import tracking
from unlearn_bench.cache import ModelCache
from unlearn_bench.data import ImageData
from unlearn_bench.evaluation._common import EVALUATIONS
from unlearn_bench.methods import check_method
from unlearn_bench.metrics import avg_gap, evaluate
from unlearn_bench.metrics.compare import compare_to_retrain
from unlearn_bench.metrics.core import logits_on
from unlearn_bench.metrics.latent_probe import fit_latent_probe, latent_probe_mia
from unlearn_bench.metrics.relearn import check_relearn, relearn_forget_accuracy
from unlearn_bench.protocol import data_digest, method_references, prepare, reference_models, unlearn_once
from unlearn_bench.tracking import summary_table
from unlearn_bench.verdict import bar_misses, floor2, regime, verdict_line

log = logging.getLogger(__name__)


def regime_line(values: dict) -> str:
    """The regime of one cell in one line (docs/statistics.md), with what it misses of the bar."""
    misses = bar_misses(values["original_forget_acc"], values["original_retain_acc"], values["original_gen_gap"],
                        values["gap_over_floor"])
    return (f"regime: original forget acc {values['original_forget_acc']:.1f}, retain acc "
            f"{values['original_retain_acc']:.1f}, TA {values['original_TA']:.1f} (generalisation gap "
            f"{values['original_gen_gap']:.1f}); original gap / retrain floor {floor2(values['gap_over_floor'])} -> "
            + ("meets the bar" if not misses else "MISSES the bar: " + "; ".join(misses)))


@EVALUATIONS.register("cell")
def run_classification(cfg: DictConfig, record_file: Path) -> dict:
    """One classification cell: reference models, the method, the scores, the record and the printed rows."""
    method_fn = check_method(cfg.method)  # a bad name or switch fails before any training
    if cfg.relearn.enabled:
        check_relearn(cfg.relearn)
    cache = ModelCache(Path(cfg.paths.cache_dir))
    cell = prepare(cfg, cache.root)
    models, metas = reference_models(cell, cache)
    splits, ctx = cell.splits, cell.ctx

    ctx.references = method_references(metas, models)
    run = unlearn_once(method_fn, models["original"], splits, cfg.method, ctx, cfg.seed)
    unlearned, rte, diverged = run.model, run.seconds, run.diverged
    if diverged:
        log.warning("method %s diverged (non-finite loss or weights); its metrics are recorded as they are",
                    cfg.method.name)

    def scores(model: nn.Module, attack: bool) -> dict[str, float]:
        metrics = evaluate(model, splits, ctx, cfg.metrics)
        if attack:
            metrics["relearn_FA"] = relearn_forget_accuracy(model, splits, cfg.relearn, ctx)
        return metrics

    results = {"method": scores(unlearned, cfg.relearn.enabled)}
    for stage in ("retrain", "retrain2", "original"):  # shared by every method of the cell: computed once, cached
        attack = cfg.relearn.enabled and stage == "retrain"
        key = {"model": metas[stage]["key"], "metrics": OmegaConf.to_container(cfg.metrics, resolve=True),
               "relearn": OmegaConf.to_container(cfg.relearn, resolve=True) if attack else None,
               "seed": cfg.seed, "forget_index": data_digest(splits.forget_index, splits.forget_index)}
        results[stage], _, _ = cache.get_or_compute(f"{stage}-eval", key, lambda _, m=models[stage], a=attack: scores(m, a))
    for metrics in results.values():
        metrics["avg_gap"] = avg_gap(metrics, results["retrain"], list(cfg.metrics.gap_over))
    # The metric columns against the retrain model (ToW, ToW-MIA, JS and activation distance on D_f).
    scored = {"method": unlearned, **{stage: models[stage] for stage in ("retrain", "retrain2", "original")}}
    forget_logits = {stage: logits_on(model, splits.forget, ctx) for stage, model in scored.items()}
    if cfg.metrics.get("latent_probe") is not None:  # the published ManiF-SMC attack, fitted once on θ_o
        unused = [cell.unused_test] if cell.unused_test is not None else []
        test_split = ImageData.concat(splits.test, splits.forget_test, *unused)
        probe = fit_latent_probe(models["original"], splits.train, test_split, ctx, cfg.metrics.latent_probe, cfg.seed)
        for stage, model in scored.items():
            results[stage]["MIA_latent"] = latent_probe_mia(probe, model, splits, ctx)
    for stage, metrics in results.items():
        metrics.update(compare_to_retrain(metrics, results["retrain"], forget_logits[stage], forget_logits["retrain"]))
    results["method"]["RTE"] = rte
    results["retrain"]["RTE"] = metas["retrain"]["train_seconds"]
    results["retrain2"]["RTE"] = metas["retrain2"]["train_seconds"]
    floor = results["retrain2"]["avg_gap"]  # the gap between two retrains: the noise of retraining itself
    cell_regime = regime(results["original"], results["retrain"], floor)

    record = tracking.save_record(cfg, record_file, {
        "metrics": results["method"], "retrain_metrics": results["retrain"],
        "original_metrics": results["original"], "retrain2_metrics": results["retrain2"],
        "regime": cell_regime, "diverged": diverged,
        "forget_size": len(splits.forget), "retain_size": len(splits.retain), "test_size": len(splits.test),
        "models": {stage: {"key": metas[stage]["key"], "train_seconds": metas[stage]["train_seconds"],
                           "loss_curve": metas[stage].get("loss_curve"),
                           "machine": metas[stage].get("machine")} for stage in metas}}, ctx)

    print_cell(record, list(cfg.metrics.names), record_file)
    return record


def print_cell(record: dict, metric_names: list[str], record_file: Path) -> None:
    """The cell's table (method, retrain, retrain floor, doing nothing), regime line and verdict, from its
    record: what a run prints, and what a rerun of a finished cell prints again."""
    method = record["method"]
    columns = [c for c in [*metric_names, "MIA_latent", "avg_gap", "RTE", "relearn_FA"] if c in record["metrics"]]
    rows = {method: record["metrics"], "retrain": record["retrain_metrics"],
            "retrain floor": record["retrain2_metrics"], "original": record["original_metrics"]}
    print(summary_table(rows, columns))
    print(regime_line(record["regime"]))
    print(verdict_line(method, record["metrics"]["avg_gap"], record["retrain2_metrics"]["avg_gap"],
                       record["original_metrics"]["avg_gap"]))
    print(f"record: {record_file}")
