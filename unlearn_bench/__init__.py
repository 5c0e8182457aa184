"""unlearn-bench: which unlearning method, with which augmentation, comes closest to retraining."""

from unlearn_bench.config import register_resolvers

__version__ = "0.1.0"

register_resolvers()
