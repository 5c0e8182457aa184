"""The augmentation and model keys as a schema: every key each pipeline and model reads is declared beside
the code that reads it (its registered check), every key of conf/augmentation/*.yaml and conf/model/*.yaml
is declared (a new key without a declaration fails here), and every declared key refuses a wrong type and
an out-of-range value in one line naming it, before anything is built."""

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
