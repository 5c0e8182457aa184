"""The evaluation modes the runner dispatches on, one registry: `cell` (one method against one retrain model,
docs/protocol.md), `pool` (against pools of models, docs/pools.md), `blind` (the tuning objective without a
retrain model, docs/tuning.md) and `generation` (a cell of the diffusion task, docs/generation.md). Each entry
is `fn(cfg, record_file) -> record`; each writes its record through `tracking.save_record`."""

from __future__ import annotations

from omegaconf import DictConfig

from unlearn_bench.registry import Registry

EVALUATIONS: Registry = Registry("evaluation")


def evaluation_mode(cfg: DictConfig) -> str:
    """The entry a config selects: its `eval` group, except that a generation task's cell is the generation
    entry (validate() refuses the other combinations)."""
    return "generation" if cfg.task.name == "generation" and cfg.eval.name == "cell" else cfg.eval.name
