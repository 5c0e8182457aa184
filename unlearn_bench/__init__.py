"""unlearn-bench: which unlearning method, with which augmentation, comes closest to retraining."""

__version__ = "0.1.0"
