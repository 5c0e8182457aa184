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


def test_the_report_layer_reads_records_only():
    """unlearn_bench.report turns records into verdicts: it imports neither torch nor any module that trains,
    and nothing outside it imports it."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent / "unlearn_bench"
    report = package / "report"
    for path in report.rglob("*.py"):
        imported = re.findall(r"^\s*(?:from|import) ([\w.]+)", path.read_text(), flags=re.M)
        assert not [name for name in imported if name.split(".")[0] == "torch"], f"{path} imports torch"
        assert all(name.startswith("unlearn_bench.report") for name in imported if name.startswith("unlearn_bench")), path
    for path in package.rglob("*.py"):
        if report not in path.parents:
            assert "unlearn_bench.report" not in path.read_text(), f"{path} imports the report layer"
    loaded = subprocess.run([sys.executable, "-c", "import sys, unlearn_bench.report.augmentation; "
                             "print('torch' in sys.modules)"], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "False"
