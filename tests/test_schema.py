"""The config as a schema: every key each augmentation pipeline and model reads is declared beside the code
that reads it (its registered check); every other group's keys are declared in validate.py (a kind per key,
or a named rule across keys). Every key of conf/ is declared (a new key without a declaration fails here),
and every declared key refuses a wrong type and an out-of-range value in one line naming it, before
anything is built."""

import copy
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf, open_dict

from unlearn_bench.data.augment import AUGMENTATIONS
from unlearn_bench.errors import ConfigError
from unlearn_bench.models import MODELS
from unlearn_bench.validate import validate

CONF = Path(__file__).resolve().parent.parent / "conf"
GROUPS = {"augmentation": AUGMENTATIONS, "model": MODELS}
COMPOSED: dict = {}


def yaml_keys(group: str, name: str) -> set[str]:
    """The leaf keys a config of the group sets (its defaults list's files included)."""
    data = yaml.safe_load((CONF / group / f"{name}.yaml").read_text()) or {}
    keys = {k for k in data if k not in ("defaults", "name")}
    for parent in data.get("defaults", []):
        if isinstance(parent, str) and parent != "_self_":
            keys |= yaml_keys(group, parent)
    return keys


DECLARED = [(group, path.stem, key) for group, registry in GROUPS.items() for path in sorted((CONF / group).glob("*.yaml"))
            for key in (getattr(registry.declared_check(path.stem), "keys", ()) or ())]


@pytest.mark.parametrize("group", list(GROUPS))
def test_every_yaml_key_is_declared_by_its_entry(group):
    registry = GROUPS[group]
    for path in sorted((CONF / group).glob("*.yaml")):
        check = registry.declared_check(path.stem)
        declared = set(getattr(check, "keys", ()) or ())
        assert yaml_keys(group, path.stem) <= declared, (path.name, yaml_keys(group, path.stem) - declared)


@pytest.mark.parametrize("wrong", ["bogus", -5])
@pytest.mark.parametrize("group, name, key", DECLARED, ids=[f"{g}={n}:{k}" for g, n, k in DECLARED])
def test_every_declared_key_refuses_a_wrong_value_in_one_line(make_cfg, group, name, key, wrong):
    if (group, name) not in COMPOSED:  # one compose per config; the wrong value is set on a copy
        COMPOSED[(group, name)] = make_cfg(f"{group}={name}", tiny=False)
    cfg = copy.deepcopy(COMPOSED[(group, name)])
    with open_dict(cfg):
        OmegaConf.update(cfg, f"{group}.{key}", wrong, force_add=True)
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    message = str(info.value)
    assert message.startswith(f"{group}.{key}=") and "\n" not in message, message


# --- every other config group: KEY_CHECKS (a kind per key), POOL_CHECKS (eval=pool), the rules across keys ----
SETTINGS = ["dataset", "forget_rate", "attack", "eval", "task"]  # groups whose options carry plain settings
BLOCKS = ("train", "relearn", "metrics", "perf", "checkpoint", "dataset", "forget_rate", "attack", "eval")


def leaf_keys(tree: dict, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in tree.items():
        if isinstance(value, dict) and value and f"{prefix}{key}" not in ("eval.slurm", "metrics.latent_probe"):
            keys |= leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


def test_every_key_of_every_config_group_is_declared(make_cfg):
    """A new key in conf/ without a declaration fails here: each leaf of the composed config's setting blocks
    and top-level switches, under every option of the groups that carry settings, is checked by a kind of
    its own (KEY_CHECKS, POOL_CHECKS) or by a named rule across keys (CHECKED_BY_RULE)."""
    from unlearn_bench.validate import CHECKED_BY_RULE, KEY_CHECKS, POOL_CHECKS

    declared = set(KEY_CHECKS) | set(POOL_CHECKS) | set(CHECKED_BY_RULE)
    undeclared = {}
    for group in SETTINGS:
        for path in sorted((CONF / group).glob("*.yaml")):
            cfg = OmegaConf.to_container(make_cfg(f"{group}={path.stem}", tiny=False), resolve=False)
            keys = {k for block in BLOCKS if isinstance(cfg.get(block), dict) for k in leaf_keys(cfg[block], f"{block}.")}
            keys |= {k for k, v in cfg.items() if not isinstance(v, dict)}  # seed, device, force, ...
            for key in keys - declared - {"paths", "logger", "hydra"}:
                undeclared.setdefault(key, f"{group}={path.stem}")
    assert not undeclared, undeclared


WRONG_WHERE = {"dataset.file": "dataset=cifar10", "dataset.sha256": "dataset=cifar10", "dataset.source": "dataset=cifar10",
               "dataset.download": "dataset=cifar10", "attack.": "task=generation"}


def keyed(key: str) -> str:
    return next((ov for prefix, ov in WRONG_WHERE.items() if key.startswith(prefix)), "")


@pytest.mark.parametrize("wrong", ["bogus", -5])
@pytest.mark.parametrize("key", sorted(__import__("unlearn_bench.validate", fromlist=["KEY_CHECKS"]).KEY_CHECKS))
def test_every_key_check_refuses_a_wrong_value_in_one_line(make_cfg, key, wrong):
    where = keyed(key)
    if where not in COMPOSED:
        COMPOSED[where] = make_cfg(*([where] if where else []), tiny=False)
    cfg = copy.deepcopy(COMPOSED[where])
    with open_dict(cfg):
        OmegaConf.update(cfg, key, wrong, force_add=True)
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    message = str(info.value)
    assert message.startswith(f"{key}=") and "\n" not in message, message


def method_keys() -> list[tuple[str, str]]:
    """(method, key) for every plain setting of every method YAML (nested method configs and the blocks
    that are not settings left out)."""
    pairs = []
    for path in sorted((CONF / "method").glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        keys = {k for k, v in data.items() if k not in ("defaults", "name", "search", "introduced", "label", "task")
                and not isinstance(v, dict)}
        for parent in data.get("defaults", []):  # settings a method inherits (conf/shared, another method)
            if isinstance(parent, str) and parent != "_self_" and parent.partition("@")[2] in ("", "_here_"):
                name = parent.partition("@")[0].lstrip("/")
                base, shared = CONF / "method" / f"{name.removeprefix('method/')}.yaml", CONF / f"{name}.yaml"
                for source in (base, shared):
                    if source.is_file():
                        keys |= {k for k, v in (yaml.safe_load(source.read_text()) or {}).items()
                                 if k not in ("defaults", "name", "search", "introduced") and not isinstance(v, dict)}
        pairs += [(path.stem, key) for key in sorted(keys)]
    return pairs


METHOD_KEYS = method_keys()


@pytest.mark.parametrize("wrong", ["bogus", -5])
@pytest.mark.parametrize("method, key", METHOD_KEYS, ids=[f"{m}.{k}" for m, k in METHOD_KEYS])
def test_every_method_key_refuses_a_wrong_value_in_one_line(make_cfg, method, key, wrong):
    """A method's every setting has a declared kind: a wrong type and an out-of-range value are one line naming
    it, from validate() or the method's registered checks, before anything is built."""
    from unlearn_bench.methods import METHODS, check_method

    where = ("method", method)
    if where not in COMPOSED:
        text = (CONF / "method" / f"{method}.yaml").read_text()
        extra = ["task=generation"] if "task: generation" in text else []
        extra += ["forget_rate=class", "forget_rate.class_id=0"] if method == "unsir" else []
        COMPOSED[where] = make_cfg(f"method={method}", *extra, tiny=False)
    cfg = copy.deepcopy(COMPOSED[where])
    with open_dict(cfg):
        cfg.method[key] = wrong
    with pytest.raises(ConfigError) as info:
        validate(cfg)
        check_method(cfg.method)
        METHODS.check_cell(cfg.method.name, cfg)
    message = str(info.value)
    assert message.startswith(f"method.{key}=") and "\n" not in message, message


@pytest.mark.parametrize("name, key, value", [("randaugment", "num_ops", 0), ("random_erasing", "p", 0.0)])
def test_a_policy_set_to_do_nothing_is_refused(make_cfg, name, key, value):
    """RandAugment with no operation and erasing with p = 0 are crop + flip under another name: the records
    would credit a pipeline that never ran, so the value is refused in one line."""
    cfg = make_cfg(f"augmentation={name}", f"augmentation.{key}={value}", tiny=False)
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert str(info.value).startswith(f"augmentation.{key}={value}")
