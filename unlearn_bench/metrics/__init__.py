"""Metrics of docs/protocol.md, each a registered function of one model's outputs on the protocol's sets."""

from unlearn_bench.metrics.core import METRICS, Outputs, avg_gap, evaluate, model_outputs

__all__ = ["METRICS", "Outputs", "avg_gap", "evaluate", "model_outputs"]
