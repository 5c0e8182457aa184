"""`scale=paper` against the references: for every method whose reference has a CIFAR-10 setting, the
composed config's batch size, epochs, learning rate, schedule and augmentation in the unlearning stage are
the reference's (each value with the file and commit it was read from)."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from unlearn_bench.config import register_resolvers

from .conftest import CONFIG_DIR

SALUN = "OPTML-Group/Unlearn-Saliency Classification/arg_parser.py, main_forget.py, README.md @ a6e89fd17ff737c2"
DEEP = "xcadet/deepunlearn munl/unlearning/{} @ 6830ff6e5fd72f47"
SSD = "if-loops/selective-synaptic-dampening src/{} @ cdfdc0e35c1908e0"
SCRUB = "meghdadk/SCRUB small_scale_unlearning.ipynb @ 98ffb1196ffbec26"
SCAR = "jbonato1/SCAR src/opts.py, src/dsets.py @ 280ceaebd69e81f1"
RUM = "kairanzhao/RUM main_rum.py, arg_parser.py @ f593c9d605ca175a"

# (method, key in method config, the reference's value, where it is read). `augmentation` is the cell's
# pipeline in the unlearning stage: crop + flip (`default`) for every reference here that reads D through
# its training transform; RUM passes --no_aug to every step and SCAR reads D_f with the test transform.
REFERENCE = [
    ("ft", "batch_size", 256, SALUN), ("ft", "epochs", 10, SALUN), ("ft", "lr", 0.01, SALUN),
    ("rl", "batch_size", 256, SALUN), ("rl", "epochs", 10, SALUN), ("rl", "lr", 0.013, SALUN),
    ("rl", "schedule", "sequential", "OPTML-Group/Unlearn-Saliency Classification/unlearn/RL.py @ ac880a22f51aa333"),
    ("ga", "batch_size", 256, SALUN), ("ga", "epochs", 5, SALUN), ("ga", "lr", 1.0e-4, SALUN),
    ("salun", "batch_size", 256, SALUN), ("salun", "epochs", 10, SALUN), ("salun", "lr", 0.013, SALUN),
    ("salun", "mask_ratio", 0.5, SALUN), ("salun", "mask_update", "hold", SALUN),
    ("l1_sparse", "batch_size", 256, SALUN), ("l1_sparse", "epochs", 10, SALUN), ("l1_sparse", "lr", 0.01, SALUN),
    ("l1_sparse", "gamma", 1.0e-4, SALUN),
    ("boundary_expanding", "batch_size", 256, SALUN), ("boundary_expanding", "epochs", 10, SALUN),
    ("boundary_expanding", "lr", 1.0e-6, SALUN),
    ("boundary_shrink", "batch_size", 256, SALUN), ("boundary_shrink", "epochs", 10, SALUN),
    ("boundary_shrink", "lr", 1.0e-6, SALUN),
    ("iu", "alpha", 10.0, SALUN),
    ("neggrad_plus", "batch_size", 256, DEEP.format("neggradplus.py")),
    ("neggrad_plus", "epochs", 10, DEEP.format("neggradplus.py")),
    ("neggrad_plus", "lr", 0.01, DEEP.format("neggradplus.py")),
    ("cf_k", "batch_size", 256, DEEP.format("catastrophic_forgetting_k.py")),
    ("cf_k", "epochs", 10, DEEP.format("catastrophic_forgetting_k.py")),
    ("cf_k", "lr", 0.01, DEEP.format("catastrophic_forgetting_k.py")),
    ("cf_k", "lr_decay_rate", 0.1, DEEP.format("scrub_utils.py")),
    ("eu_k", "batch_size", 256, DEEP.format("exact_unlearning_k.py")),
    ("eu_k", "epochs", 10, DEEP.format("exact_unlearning_k.py")),
    ("eu_k", "lr", 0.01, DEEP.format("exact_unlearning_k.py")),
    ("msg", "batch_size", 64, DEEP.format("kgltop2.py")), ("msg", "epochs", 5, DEEP.format("kgltop2.py")),
    ("msg", "lr", 0.001, DEEP.format("kgltop2.py")),
    ("ct", "batch_size", 64, DEEP.format("kgltop5.py")), ("ct", "epochs", 3, DEEP.format("kgltop5.py")),
    ("ct", "lr", 0.001, DEEP.format("kgltop5.py")),
    ("scrub", "batch_size", 32, SCRUB), ("scrub", "forget_batch_size", 64, SCRUB), ("scrub", "epochs", 10, SCRUB),
    ("scrub", "lr", 5.0e-4, SCRUB), ("scrub", "lr_decay_rate", 0.1, SCRUB),
    ("ssd", "batch_size", 128, SSD.format("forget_random_main.py")),
    ("unsir", "batch_size", 32, SSD.format("forget_full_class_strategies.py")),
    ("unsir", "repair_batch_size", 128, SSD.format("forget_full_class_strategies.py")),
    ("unsir", "lr", 1.0e-4, SSD.format("forget_full_class_strategies.py")),
    ("scar", "batch_size", 1024, SCAR), ("scar", "epochs", 30, SCAR), ("scar", "lr", 5.0e-4, SCAR),
    ("scar", "forget_augment", False, SCAR), ("scar", "target_examples", "half", SCAR),
    ("rum", "mid.batch_size", 256, RUM), ("rum", "mid.epochs", 10, RUM), ("rum", "mid.lr", 0.1, RUM),
    ("rum", "high.batch_size", 256, RUM), ("rum", "high.epochs", 5, RUM), ("rum", "high.lr", 0.1, RUM),
    ("rum", "augment", False, RUM),
]
CROP_AND_FLIP = sorted({method for method, *_ in REFERENCE} - {"rum"})


def paper_cfg(method: str):
    register_resolvers()
    forget = "class" if method == "unsir" else "random_10"
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=["scale=paper", f"method={method}", f"forget_rate={forget}"])


@pytest.mark.parametrize("method, key, value, source", REFERENCE,
                         ids=[f"{m}.{k}" for m, k, *_ in REFERENCE])
def test_paper_scale_reproduces_the_reference_value(method, key, value, source):
    cfg = paper_cfg(method).method
    for part in key.split("."):
        cfg = cfg[part]
    assert cfg == value, f"scale=paper method={method}: {key}={cfg!r}, the reference ({source}) has {value!r}"


@pytest.mark.parametrize("method", CROP_AND_FLIP)
def test_paper_scale_unlearns_with_crop_and_flip_and_the_references_model(method):
    cfg = paper_cfg(method)
    assert cfg.augmentation.name == "default"  # RandomCrop(32, padding 4) + horizontal flip
    assert (cfg.dataset.name, cfg.model.name, cfg.dataset.train_size) == ("cifar10", "resnet18", None)
