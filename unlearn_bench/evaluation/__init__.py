"""Evaluation modes: one module per mode, each registered in EVALUATIONS by the name the runner selects."""

from unlearn_bench.evaluation._common import EVALUATIONS, evaluation_mode
from unlearn_bench.registry import import_submodules

import_submodules(__name__)

__all__ = ["EVALUATIONS", "evaluation_mode"]
