from pathlib import Path

import pytest

from unlearn_bench.data import DATASETS
from unlearn_bench.data.augment import AUGMENTATIONS
from unlearn_bench.errors import ConfigError
from unlearn_bench.methods import METHODS
from unlearn_bench.metrics import METRICS
from unlearn_bench.models import MODELS
from unlearn_bench.registry import Registry

CONF = Path(__file__).resolve().parent.parent / "conf"


def test_duplicate_name_raises():
    registry = Registry("thing")
    registry.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("a")(lambda: 2)


def test_unknown_name_lists_accepted_names_and_close_matches():
    with pytest.raises(ConfigError) as info:
        METHODS.get("salunn")
    message = str(info.value)
    assert "method.name='salunn'" in message and "did you mean salun" in message
    assert all(name in message for name in METHODS.names())
    assert "\n" not in message


@pytest.mark.parametrize("group, registry", [("method", METHODS), ("dataset", DATASETS), ("model", MODELS),
                                             ("augmentation", AUGMENTATIONS)])
def test_every_yaml_has_an_entry_and_every_entry_a_yaml(group, registry, make_cfg):
    names = {}
    for path in sorted((CONF / group).glob("*.yaml")):  # variants in subfolders reuse these names
        cfg = make_cfg(f"{group}={path.stem}", tiny=False)
        names[path.stem] = cfg[group].name
    assert all(stem == name for stem, name in names.items()), names
    assert set(names.values()) == set(registry.names())


def test_metric_names_in_config_are_registered(make_cfg):
    cfg = make_cfg()
    assert set(cfg.metrics.names) <= set(METRICS.names())
    assert set(cfg.metrics.gap_over) <= set(cfg.metrics.names)


def test_layers_do_not_reach_back_to_the_entry_point():
    """The protocol lies below the tasks, which lie below the entry point: no module imports the runner,
    and the protocol imports no task."""
    import re
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent / "unlearn_bench"
    for path in package.rglob("*.py"):
        text = path.read_text()
        if path.name != "run.py":
            assert not re.search(r"(from|import) unlearn_bench\.run\b", text), f"{path} imports the runner"
    protocol = (package / "protocol.py").read_text()
    assert not re.search(r"unlearn_bench\.(classification|generation)", protocol)
