"""Model factory. Every model exposes timm's interface: forward_features, forward_head(pre_logits=...),
get_classifier, so that feature extraction and head surgery work the same for all of them."""

from unlearn_bench.models.factory import MODELS, build_model, classifier_name, penultimate_features

__all__ = ["MODELS", "build_model", "classifier_name", "penultimate_features"]
