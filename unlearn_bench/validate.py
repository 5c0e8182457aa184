"""Every config value the run will use, checked before anything else happens (before a finished cell is
skipped, before data load, before the first model trains).

Bad input is a class, not a list: each value has a kind (integer in a range, finite number in a range,
one of a set, boolean, optional) and each kind fails the same way, one line naming the key, the value and
what is accepted (ConfigError). Combinations the protocol cannot honour are rejected here too, never
silently reinterpreted. Method switches are checked by the check each method registers beside itself.
"""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf

from unlearn_bench.checks import (
    Check,
    auto_or_boolean,
    boolean,
    choice,
    fractions,
    integer,
    names,
    number,
    numbers,
    one_of,
    optional,
    positive,
    text,
)
from unlearn_bench.config import CONFIG_DIR
from unlearn_bench.data.augment import AUGMENTATIONS
from unlearn_bench.errors import ConfigError, did_you_mean
from unlearn_bench.methods import METHODS, check_method  # validation lies above what it checks
from unlearn_bench.metrics import METRICS
from unlearn_bench.metrics.latent_probe import check_latent_probe
from unlearn_bench.models import MODELS

SGD = {"lr": positive, "momentum": number(0.0, 1.0, high_open=True), "weight_decay": number(0.0),
       "batch_size": integer(1)}

KEY_CHECKS: dict[str, Check] = {
    "seed": integer(0, 2**32 - 1),  # NumPy's legacy seeding takes 32 bits
    "progress": boolean, "force": boolean, "deterministic": boolean,
    "num_threads": optional(integer(1)),
    "train.epochs": integer(1), **{f"train.{k}": v for k, v in SGD.items()},
    "train.nesterov": boolean, "train.scheduler": choice("constant", "multistep", "cosine"),
    "train.gamma": number(0.0, 1.0, low_open=True), "train.label_smoothing": number(0.0, 1.0, high_open=True),
    "metrics.eval_batch_size": integer(1), "metrics.mia.C": positive,
    "metrics.mia.kernel": choice("rbf", "linear", "poly", "sigmoid"),
    "relearn.enabled": boolean, "relearn.samples": integer(1), "relearn.steps": integer(1),
    **{f"relearn.{k}": v for k, v in SGD.items()},
    "forget_rate.mode": choice("random", "class", "corrupted", "memorization", "subpopulation"),
    "forget_rate.share": optional(number(0.0, 1.0, low_open=True, high_open=True)),
    "forget_rate.stratum": optional(choice("low", "mid", "high")), "forget_rate.score": optional(choice("proxy", "feldman")),
    "forget_rate.clusters": optional(integer(2)), "forget_rate.cluster": optional(integer(0)),
    "forget_rate.rate": optional(number(0.0, 1.0, low_open=True, high_open=True)),
    "forget_rate.count": optional(integer(1)), "forget_rate.class_id": optional(integer(0)),
    "dataset.train_size": optional(integer(1)), "dataset.test_size": optional(integer(1)),
    "dataset.subset_seed": integer(0),
    "dataset.name": choice(*sorted(p.stem for p in (CONFIG_DIR / "dataset").glob("*.yaml"))),
    "dataset.num_classes": integer(2), "dataset.channels": choice(1, 3), "dataset.image_size": integer(1),
    "dataset.mean": numbers(), "dataset.std": numbers(0.0, low_open=True),
    "dataset.source": choice("auto", "npz", "torchvision"), "dataset.download": boolean,
    "dataset.file": text(r"[\w.-]+\.npz", "a file name ending in .npz"),
    "dataset.sha256": optional(text(r"[0-9a-f]{64}", "64 lowercase hex digits")),
    "dataset.split_seed": integer(0), "dataset.test_fraction": number(0.0, 1.0, low_open=True, high_open=True),
    "device": text(r"auto|cpu|cuda(:\d+)?", "auto, cpu, cuda, cuda:N"),
    **{f"perf.{k}": auto_or_boolean for k in ("amp", "channels_last", "compile", "pin_memory")},
    "metrics.names": names, "metrics.gap_over": names,
    "metrics.mia.gamma": one_of(choice("auto", "scale"), positive),
    "attack.name": choice(*sorted(p.stem for p in (CONFIG_DIR / "attack").glob("*.yaml"))),
    "attack.aux": choice("retain", "sample"), "attack.aux_size": integer(1), "attack.steps": integer(1),
    "attack.batch_size": integer(1), "attack.lr": positive,
    "checkpoint.every_epochs": optional(integer(0)),
    "generation.floor": boolean, "generation.reference_seed": optional(integer(0, 2**32 - 1)),
}
# Groups whose options carry different keys: a declared key an option lacks is not read by that option.
OPTIONAL_PARENTS = ("dataset.", "attack.", "generation.")
# Method keys that every method shares where it has them (its own switches: the method's registered check).
METHOD_CHECKS: dict[str, Check] = {"epochs": integer(1), "steps": integer(1), "nesterov": boolean, **SGD}


# Keys checked by a rule across keys rather than by a kind of their own: where each is checked. With
# KEY_CHECKS, POOL_CHECKS and the method, model and augmentation registries' declarations this is the whole
# schema; tests/test_schema.py fails on a key of a config group that none of them declares.
CHECKED_BY_RULE = {
    "train.milestones": "check_combinations (fractions of training, under a MultiStep schedule)",
    "forget_rate.halves": "check_combinations (an even count, score=feldman only)",
    "metrics.latent_probe": "check_latent_probe (null, or the probe's settings)",
    "eval.name": "check_eval (cell, pool or blind)",
    "eval.validation_size": "check_eval (eval=blind: an integer >= 2)",
}


def check_combinations(cfg: DictConfig) -> None:
    """Settings that are each valid but cannot all hold: one is never silently dropped for the other."""
    forget = cfg.forget_rate
    if forget.mode in ("random", "memorization") and forget.get("rate") is not None and forget.get("count") is not None:
        raise ConfigError("forget_rate.count", forget.count, f"null while forget_rate.rate={forget.rate} sets the "
                          "size: one size, a rate or a count (forget_rate.rate=null forget_rate.count=N)")
    if forget.mode != "corrupted" and forget.get("share") is not None:
        raise ConfigError("forget_rate.share", forget.share, "null outside corrective unlearning "
                          "(forget_rate=corrupted selects it)")
    if forget.mode == "corrupted":
        for key in ("rate", "count", "class_id"):
            if forget.get(key) is not None:
                raise ConfigError(f"forget_rate.{key}", forget[key], "null in corrective unlearning (D_f is the "
                                  "flipped share of D: forget_rate.share)")
        if forget.get("share") is None:
            raise ConfigError("forget_rate.share", None, "a share of D in (0, 1) to flip")
    elif forget.mode == "memorization":
        if forget.get("class_id") is not None:
            raise ConfigError("forget_rate.class_id", forget.class_id, "null for a memorisation stratum")
        if forget.get("rate") is None and forget.get("count") is None:
            raise ConfigError("forget_rate.count", None, "the stratum's size (forget_rate.count, or forget_rate.rate)")
        for key in ("stratum", "score"):
            if forget.get(key) is None:
                raise ConfigError(f"forget_rate.{key}", None, "set for a memorisation stratum")
        if forget.score == "feldman":
            halves = forget.get("halves")
            integer(2)("forget_rate.halves", halves)
            if halves % 2:
                raise ConfigError("forget_rate.halves", halves, "an even number (the halves come in complementary pairs)")
        elif forget.get("halves") is not None:
            raise ConfigError("forget_rate.halves", forget.halves, "null unless forget_rate.score=feldman")
    elif forget.mode == "subpopulation":
        for key in ("rate", "count"):
            if forget.get(key) is not None:
                raise ConfigError(f"forget_rate.{key}", forget[key], "null for a subpopulation (its size is the cluster's)")
        if forget.get("class_id") is None or forget.get("clusters") is None or forget.get("cluster") is None:
            raise ConfigError("forget_rate.class_id/clusters/cluster", None, "all three set for a subpopulation")
        integer(0, forget.clusters - 1)("forget_rate.cluster", forget.cluster)
    elif forget.mode == "random" and forget.get("class_id") is not None:
        raise ConfigError("forget_rate.class_id", forget.class_id,
                          "null in random forgetting (forget_rate=class selects class-wise forgetting)")
    if forget.mode == "class":
        for key in ("rate", "count"):
            if forget.get(key) is not None:
                raise ConfigError(f"forget_rate.{key}", forget[key],
                                  "null in class-wise forgetting (forget_rate=random_10 or random_50 selects "
                                  "random forgetting)")
        if forget.get("class_id") is None:
            raise ConfigError("forget_rate.class_id", None, "a class index in class-wise forgetting")
    elif forget.mode == "random" and forget.get("rate") is None and forget.get("count") is None:
        raise ConfigError("forget_rate.rate", None, "a rate in (0, 1) or a forget_rate.count")
    if cfg.train.get("scheduler") == "multistep":
        fractions("train.milestones", cfg.train.milestones)
    names = list(cfg.metrics.names)
    for name in names:
        METRICS.get(name)
    missing = [k for k in cfg.metrics.gap_over if k not in names]
    if missing or not len(cfg.metrics.gap_over):
        raise ConfigError("metrics.gap_over", list(cfg.metrics.gap_over),
                          f"a non-empty subset of metrics.names ({', '.join(names)})")
    model_keys = ("stratum", "score", "halves", "clusters", "cluster")
    for key in model_keys:
        owner = "memorization" if key in ("stratum", "score", "halves") else "subpopulation"
        if forget.get(key) is not None and forget.mode != owner:
            raise ConfigError(f"forget_rate.{key}", forget[key], f"null outside forget_rate={owner}")
    if forget.get("class_id") is not None and forget.mode in ("class", "subpopulation"):
        integer(0, cfg.dataset.num_classes - 1)("forget_rate.class_id", forget.class_id)
    if cfg.model.name == "resnet18":
        boolean("model.zero_init_last", cfg.model.get("zero_init_last"))
    gamma = cfg.metrics.mia.gamma
    if gamma not in ("auto", "scale"):
        number(0.0, low_open=True)("metrics.mia.gamma", gamma)
    check_latent_probe(cfg)
    AUGMENTATIONS.check(cfg.augmentation.name, cfg.augmentation)  # every key of the pipeline and of the model
    MODELS.check(cfg.model.name, cfg.model)


NOT_TUNABLE = ("name", "label", "task", "search")


def check_search(method: DictConfig) -> None:
    """A method's tuning space (docs/tuning.md): each key a key of the method, each range {low, high} of finite
    numbers with low < high, `log: true` only for positive ranges, `int: true` only with integer bounds."""
    space = method.get("search")
    if space is None:
        return
    if not isinstance(space, DictConfig):
        raise ConfigError("method.search", space, "a mapping of method keys to {low, high[, log][, int]}")
    tunable = [k for k in method if k not in NOT_TUNABLE]
    for key, spec in space.items():
        where = f"method.search.{key}"
        if key not in tunable:
            raise ConfigError(where, OmegaConf.to_container(spec) if isinstance(spec, DictConfig) else spec,
                              f"a key of the method ({', '.join(tunable)}){did_you_mean(str(key), tunable)}")
        if not isinstance(spec, DictConfig) or not {"low", "high"} <= set(spec) or set(spec) - {"low", "high", "log", "int"}:
            raise ConfigError(where, OmegaConf.to_container(spec) if isinstance(spec, DictConfig) else spec,
                              "{low: L, high: H} with optional log: true|false and int: true|false")
        low, high = spec.low, spec.high
        for bound in ("low", "high"):
            number()(f"{where}.{bound}", spec[bound])
        if not low < high:
            raise ConfigError(f"{where}.high", high, f"a number above low={low} (an empty or inverted range)")
        for flag in ("log", "int"):
            if flag in spec:
                boolean(f"{where}.{flag}", spec[flag])
        if spec.get("log") and low <= 0:
            raise ConfigError(f"{where}.low", low, "a positive number (log: true)")
        if spec.get("int"):
            for bound in ("low", "high"):
                integer()(f"{where}.{bound}", spec[bound])


def workers(key: str, value: object) -> None:
    if value != "auto":
        try:
            integer(1)(key, value)
        except ConfigError:
            raise ConfigError(key, value, "auto or an integer >= 1") from None


def text(key: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, value, "a non-empty string")


# The submitit executor's settings of eval.launcher=slurm: one job per pool member.
SLURM_CHECKS: dict[str, Check] = {"folder": text, "partition": optional(text), "timeout_min": integer(1),
                                  "cpus_per_task": integer(1), "mem_gb": positive, "gpus_per_node": integer(0)}


def slurm_settings(key: str, value: object) -> None:
    """eval.slurm: every key known and of its kind (checked whatever the launcher, so a typo never waits
    for the day the launcher is switched)."""
    if not isinstance(value, DictConfig):
        raise ConfigError(key, value, "a mapping of submitit settings")
    accepted = [*SLURM_CHECKS, "additional_parameters"]
    for name in value:
        if name not in accepted:
            raise ConfigError(f"{key}.{name}", value[name], f"a key of {key} ({', '.join(accepted)})"
                              f"{did_you_mean(str(name), accepted)}")
    for name, check in SLURM_CHECKS.items():
        check(f"{key}.{name}", value.get(name))
    extra = value.get("additional_parameters")
    if not isinstance(extra, DictConfig):
        raise ConfigError(f"{key}.additional_parameters", extra, "a mapping of sbatch options")


def pool_launcher(key: str, value: object) -> None:
    choice("local", "slurm")(key, value)
    if value == "slurm":
        import shutil

        if shutil.which("sbatch") is None:
            raise ConfigError(key, value, "local (no sbatch on PATH: eval.launcher=slurm submits from a SLURM "
                              "login node)")


POOL_CHECKS: dict[str, Check] = {"eval.pool_size": integer(3), "eval.retain_sample": integer(1),
                                 "eval.rates": choice("grid", "samples"),
                                 "eval.klom_top_edge": choice("closed", "reference"),
                                 "eval.klom_direction": choice("retrain_first", "unlearned_first"),
                                 "eval.workers": workers, "eval.keep_models": boolean,
                                 "eval.slurm": slurm_settings, "eval.launcher": pool_launcher}


def check_eval(cfg: DictConfig) -> None:
    """`eval=cell` (one method run against one retrain model) or `eval=pool` (docs/pools.md) and its keys."""
    evaluation = cfg.get("eval")
    name = evaluation.get("name") if isinstance(evaluation, DictConfig) else evaluation
    choice("cell", "pool", "blind")("eval.name", name)
    keys = {"cell": ("name",), "pool": ("name", *(k.partition(".")[2] for k in POOL_CHECKS)),
            "blind": ("name", "validation_size")}[name]
    for key in evaluation:
        if key not in keys:
            raise ConfigError(f"eval.{key}", evaluation[key], f"a key of eval={name} ({', '.join(keys)})"
                              f"{did_you_mean(str(key), list(keys))}")
    if name == "cell":
        return
    if name == "pool":
        for key, check in POOL_CHECKS.items():
            check(key, OmegaConf.select(cfg, key, default=None))
    else:
        integer(2)("eval.validation_size", evaluation.validation_size)
    if cfg.task.name != "classification":
        raise ConfigError("eval", name, f"eval=cell with task=generation (eval={name} scores classifiers)")
    if cfg.method.name == "retrain":
        raise ConfigError("method", "retrain", f"an unlearning method under eval={name} (retraining is what "
                          f"eval={name} {'compares with' if name == 'pool' else 'does without'})")
    if cfg.relearn.enabled:
        raise ConfigError("relearn.enabled", True, f"false under eval={name} (no relearning attack there; "
                          "eval=cell runs it)")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError on the first value that the run cannot use as given."""
    for key, check in KEY_CHECKS.items():
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if key.startswith(OPTIONAL_PARENTS) and (node is None or leaf not in node):
            continue  # an option without the key (a dataset without a file) does not read it
        check(key, OmegaConf.select(cfg, key, default=None, throw_on_missing=False))
    if cfg.task.name == "classification":
        if cfg.attack.name != "none":
            raise ConfigError("attack", cfg.attack.name, "none with task=classification (DiMRA relearns a "
                              "diffusion model: task=generation; a classifier's relearning attack is relearn.*)")
        check_combinations(cfg)
    elif cfg.forget_rate.mode != "class":
        raise ConfigError("forget_rate", cfg.forget_rate.mode, "class (task=generation forgets one class)")
    for key, check in METHOD_CHECKS.items():
        if key in cfg.method:
            check(f"method.{key}", cfg.method[key])
    check_search(cfg.method)
    check_eval(cfg)
    method_task = cfg.method.get("task", "classification")
    if method_task != cfg.task.name:
        raise ConfigError("method", cfg.method.name, f"a method of task={cfg.task.name} "
                          f"(this one is for task={method_task}); see conf/method/*.yaml")
    if cfg.task.name == "classification":
        check_method(cfg.method)  # its name and its own switches
        METHODS.check_cell(cfg.method.name, cfg)  # the method against the whole cell (forget set, model, data)


# Keys a run reads only under a condition of the composed config: (key or key prefix, the keys the condition
# itself reads, the condition, the condition in words, how to meet it). An override of such a key while the
# condition fails is never read; the condition's own keys are always read.
CONDITIONAL_KEYS: list[tuple[str, tuple[str, ...], Callable[[DictConfig], bool], str, str]] = [
    ("relearn.", ("relearn.enabled",), lambda cfg: bool(cfg.relearn.enabled),
     "relearn.enabled=false (the stage is off)", "set relearn.enabled=true to use it"),
    ("metrics.mia.", ("metrics.names",), lambda cfg: "MIA" in cfg.metrics.names, "MIA is not in metrics.names",
     "add MIA to metrics.names to use it"),
    ("train.milestones", ("train.scheduler",), lambda cfg: cfg.train.scheduler == "multistep",
     "train.scheduler is not multistep", "set train.scheduler=multistep to use it"),
    ("train.gamma", ("train.scheduler",), lambda cfg: cfg.train.scheduler == "multistep",
     "train.scheduler is not multistep", "set train.scheduler=multistep to use it"),
]


def check_overrides(cfg: DictConfig, overrides: list[str]) -> None:
    """Refuse an override of a key that the composed run never reads (its stage is off, or the condition
    under which it is read fails): it would change the cell id and nothing else. One line naming the key
    and the condition."""
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        for prefix, reads, is_read, condition, remedy in CONDITIONAL_KEYS:
            if key.startswith(prefix) and key not in reads and not is_read(cfg):
                raise ConfigError(key, OmegaConf.select(cfg, key, default=value),
                                  f"no value while {condition}: the key is never read and would only change the "
                                  f"cell id; {remedy}")

