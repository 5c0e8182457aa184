from pathlib import Path

import pytest

from unlearn_bench.data import DATASETS
from unlearn_bench.data.augment import AUGMENTATIONS
from unlearn_bench.errors import ConfigError
from unlearn_bench.evaluation import EVALUATIONS
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


def test_every_evaluation_mode_is_an_entry_and_every_entry_reachable(make_cfg):
    """The `eval` group's choices are entries of EVALUATIONS, and the generation task's cell is the one entry
    selected by the task instead."""
    from unlearn_bench.evaluation import evaluation_mode

    modes = {evaluation_mode(make_cfg(f"eval={path.stem}", tiny=False)) for path in sorted((CONF / "eval").glob("*.yaml"))}
    modes.add(evaluation_mode(make_cfg("task=generation", "method=salun_gen", tiny=False)))
    assert modes == set(EVALUATIONS.names()) == {"cell", "pool", "blind", "generation"}


def test_metric_names_in_config_are_registered(make_cfg):
    cfg = make_cfg()
    assert set(cfg.metrics.names) <= set(METRICS.names())
    assert set(cfg.metrics.gap_over) <= set(cfg.metrics.names)


def test_layers_do_not_reach_back_to_the_entry_point():
    """The protocol lies below the tasks, which lie below the entry point: only the runner and the drivers
    above it (tuning, which runs it) import it; nothing imports those drivers or the benchmark; the protocol
    imports no task."""
    import re
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent / "unlearn_bench"
    above = {package / "tuning", package / "bench"}
    for path in package.rglob("*.py"):
        text = path.read_text()
        if path.name != "run.py" and path.parent != package / "tuning":
            assert not re.search(r"(from|import) unlearn_bench\.run\b", text), f"{path} imports the runner"
        for folder in above:
            if folder not in path.parents:
                assert not re.search(rf"unlearn_bench\.{folder.name}\b", text), f"{path} imports {folder.name}"
    protocol = (package / "protocol.py").read_text()
    assert not re.search(r"unlearn_bench\.(evaluation|generation)", protocol)
    # the evaluation modes lie above the protocol and the tasks' building blocks: only the runner and the
    # drivers above it import them (the benchmark measures the pool's own code)
    for path in package.rglob("*.py"):
        if package / "evaluation" not in path.parents and path.name != "run.py" \
                and not ({package / "tuning", package / "bench"} & set(path.parents)):
            assert "unlearn_bench.evaluation" not in path.read_text(), f"{path} imports an evaluation mode"


# What the report layer may import from below it: plain arithmetic that the runner shares and the one-line
# errors of every command, no torch.
REPORT_MAY_IMPORT = (
    "unlearn_bench.report", "unlearn_bench.verdict", "unlearn_bench.tug_of_war", "unlearn_bench.errors",
    "unlearn_bench.config",
)


def test_the_report_layer_reads_records_only():
    """unlearn_bench.report turns records into verdicts: it imports neither torch nor any module that trains
    (only the record-level arithmetic and the config rules it shares with the runner), and nothing outside it imports it."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent / "unlearn_bench"
    report = package / "report"
    for path in report.rglob("*.py"):
        text = path.read_text()
        imported = re.findall(r"^\s*(?:from|import) ([\w.]+)", text, flags=re.M)
        imported += [f"unlearn_bench.{name}" for name in re.findall(r"^\s*from unlearn_bench import (\w+)", text, flags=re.M)]
        assert not [name for name in imported if name.split(".")[0] == "torch"], f"{path} imports torch"
        assert all(name.startswith(REPORT_MAY_IMPORT) for name in imported if name.startswith("unlearn_bench.")), path
    for path in package.rglob("*.py"):
        if report not in path.parents:
            assert "unlearn_bench.report" not in path.read_text(), f"{path} imports the report layer"
    modules = ", ".join(f"unlearn_bench.report.{p.stem}" for p in sorted(report.glob("*.py")) if p.stem != "__init__")
    loaded = subprocess.run([sys.executable, "-c", f"import sys, {modules}; "
                             "print('torch' in sys.modules)"], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "False"


def test_no_module_or_script_is_over_400_lines():
    """A file a newcomer can read in one sitting: split by concern before it grows past 400 lines."""
    root = Path(__file__).resolve().parent.parent
    files = [*(root / "unlearn_bench").rglob("*.py"), *(root / "scripts").glob("*")]
    long = {str(p.relative_to(root)): n for p in files if p.is_file() and (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_method_knowledge_stays_in_the_methods_own_module_and_yaml():
    """No method's name (but the reference rows, retrain and retrain_gen) appears in the runner, the protocol,
    the validator or an evaluation mode (a method's
    needs are declared where it registers); the Makefile's zoo is the SalUn table's methods, each with a search
    space; the CLI's help lists every method config."""
    import re

    import yaml

    root = Path(__file__).resolve().parent.parent
    names = sorted(p.stem for p in (CONF / "method").glob("*.yaml"))
    package = root / "unlearn_bench"
    for path in [package / "run.py", package / "protocol.py", package / "validate.py",
                 *(package / "evaluation").glob("*.py")]:
        quoted = [n for n in names if n not in ("retrain", "retrain_gen") and re.search(rf"[\"']{n}[\"']", path.read_text())]
        assert not quoted, f"{path.name} names {quoted}"
    zoo = re.search(r"^ZOO := (.+)$", (root / "Makefile").read_text(), flags=re.M).group(1).split(",")
    table = yaml.safe_load((CONF / "experiment" / "salun_table.yaml").read_text())
    grid = table["hydra"]["sweeper"]["params"]["method"].split(",")
    assert zoo == [m for m in grid if m != "retrain"]  # the zoo is the SalUn table's methods
    assert re.search(rf"^zoo={','.join(zoo)}$", (root / "scripts" / "tables.sh").read_text(), flags=re.M)
    for name in zoo:  # every one of them can be tuned
        assert (yaml.safe_load((CONF / "method" / f"{name}.yaml").read_text()) or {}).get("search"), name
    help_text = yaml.safe_load((CONF / "config.yaml").read_text())["hydra"]["help"]["template"]
    listed = set(re.findall(r"[a-z_0-9]+(?:/[a-z_]+)?", help_text.split("method:", 1)[1].split("augmentation:", 1)[0]))
    variants = {f"{p.parent.name}/{p.stem}" for p in (CONF / "method").glob("*/*.yaml") if p.parent.name != "tuned"}
    assert set(names) | variants <= listed, sorted(set(names) | variants - listed)


def test_the_package_has_no_import_circle():
    """Every `unlearn_bench` import, at module level or inside a function, follows one direction: a module
    never reaches itself again through what it imports (importing a.b.c also runs a.b's __init__)."""
    import ast

    package = Path(__file__).resolve().parent.parent / "unlearn_bench"
    modules = {}
    for path in package.rglob("*.py"):
        name = ".".join(("unlearn_bench", *path.relative_to(package).with_suffix("").parts)).removesuffix(".__init__")
        modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            found = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            if isinstance(node, ast.ImportFrom) and node.module:
                found += [f"{node.module}.{alias.name}" for alias in node.names]
            if isinstance(node, ast.Import):
                found += [alias.name for alias in node.names]
            for target in found:
                parts = target.split(".")
                targets |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)}
        graph[name] = {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph[module]):
            assert state.get(target) != 1, " -> ".join(stack[stack.index(target):] + [target])
            if not state.get(target):
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if not state.get(module):
            visit(module)
