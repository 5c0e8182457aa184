"""Unlearning methods: one module per method, each registered by the name its YAML gives in `name:`.

A method maps (θ_o, D_f, D_r) to θ_u: `fn(model, splits, cfg, ctx) -> model`, where `model` is a copy of
the original model the method may change in place and `cfg` is the method's config group.
"""

from unlearn_bench.methods._common import METHODS, check_method
from unlearn_bench.registry import import_submodules

import_submodules(__name__)

__all__ = ["METHODS", "check_method"]
