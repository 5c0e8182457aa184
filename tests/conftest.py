"""Tiny configs through Hydra's compose API: digits, the small CNN, one or two epochs, no logger."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one test process per core (pytest -n auto): each, and every process it starts, on one
    # thread, set before torch is imported; two processes of two threads each on two cores spin-wait.
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = str(ROOT / "conf")
SHARED_DATA = Path(os.environ.get("UNLEARN_BENCH_DATA", ROOT.parent / "shared" / "data"))

TINY = ["logger=none", "progress=false", "train.epochs=4", "train.batch_size=64", "++method.epochs=1",
        "++model.widths=[8,16]"]


@pytest.fixture
def workdirs(tmp_path: Path) -> list[str]:
    return [f"paths.cache_dir={tmp_path / 'cache'}", f"paths.records_dir={tmp_path / 'records'}",
            f"paths.output_dir={tmp_path / 'outputs'}", f"paths.data_root={SHARED_DATA}"]


@pytest.fixture
def make_cfg(workdirs):
    """compose(overrides) -> the tiny config with the test's own cache, records and outputs."""

    def _make(*overrides: str, tiny: bool = True) -> DictConfig:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose("config", overrides=[*(TINY if tiny else []), *workdirs, *overrides])

    return _make


@pytest.fixture
def cell_and_models(make_cfg, tmp_path):
    """(cell, reference models) of a tiny config: what a method's behaviour test starts from."""
    from unlearn_bench.cache import ModelCache
    from unlearn_bench.protocol import prepare, reference_models

    def _make(*overrides):
        cfg = make_cfg(*overrides)
        cache = ModelCache(tmp_path / "cache")
        cell = prepare(cfg, cache.root)
        models, metas = reference_models(cell, cache)
        cell.ctx.references.retrain = (models["retrain"], metas["retrain"])
        return cell, models
    return _make


def unless_given(defaults: list[str], overrides: tuple[str, ...] | list[str]) -> list[str]:
    """The tiny defaults a test's own overrides do not set: the CLI refuses a key given twice."""
    given = {o.lstrip("+~").partition("=")[0] for o in overrides if "=" in o}
    return [d for d in defaults if d.lstrip("+~").partition("=")[0] not in given]


def needs_shared_data(name: str):
    return pytest.mark.skipif(not (SHARED_DATA / name).is_file(),
                              reason=f"{name} not in UNLEARN_BENCH_DATA={SHARED_DATA}")


# Tests by kind: `pytest -m unit` runs the modules that train no model and start no process (seconds);
# every other module is `integration` (compose, train tiny models, run the CLI, SLURM).
UNIT_MODULES = {"test_pool_scores", "test_data", "test_docs", "test_registry", "test_report"}


def pytest_collection_modifyitems(items):
    for item in items:
        module = item.module.__name__.rpartition(".")[2]
        item.add_marker(pytest.mark.unit if module in UNIT_MODULES else pytest.mark.integration)

