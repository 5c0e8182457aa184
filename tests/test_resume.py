"""A reference model's training killed mid-way resumes from its checkpoint, bit-identical to an uninterrupted
run (scale=paper keeps one every 5 epochs; SLURM requeues a preempted cell, which then resumes)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .conftest import CONFIG_DIR, SHARED_DATA

TRAIN = """
import sys
from hydra import compose, initialize_config_dir
from unlearn_bench.cache import ModelCache
from unlearn_bench.protocol import prepare, reference_models
with initialize_config_dir(config_dir={config!r}, version_base="1.3"):
    cfg = compose("config", overrides=["logger=none", "progress=false", "train.epochs=20", "train.batch_size=64", "num_threads=1",
                                       "++model.widths=[8,16]", "augmentation=default", "+checkpoint.every_epochs=1",
                                       "paths.cache_dir=" + sys.argv[1], "paths.data_root={data}"])
cache = ModelCache(cfg.paths.cache_dir)
reference_models(prepare(cfg, cache.root), cache, stages=("original",))
"""


def train(cache: Path, **kw) -> subprocess.Popen:
    script = TRAIN.format(config=CONFIG_DIR, data=str(SHARED_DATA))
    return subprocess.Popen([sys.executable, "-c", script, str(cache)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def weights(cache: Path) -> str:
    (entry,) = cache.glob("original-*.pt")
    return hashlib.sha256(entry.read_bytes()).hexdigest()


def test_a_killed_training_resumes_bit_identical(tmp_path):
    whole = train(tmp_path / "whole")
    killed = train(tmp_path / "killed")
    deadline = time.monotonic() + 300
    while not list((tmp_path / "killed").glob("*.resume")):  # at least one epoch done, training goes on
        assert killed.poll() is None and time.monotonic() < deadline, killed.communicate()[0]
        time.sleep(0.01)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert not list((tmp_path / "killed").glob("original-*.pt"))  # nothing stored: the kill came mid-way
    resumed = train(tmp_path / "killed")
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out
    assert "resumed at epoch" in out
    assert whole.wait(timeout=300) == 0
    assert weights(tmp_path / "killed") == weights(tmp_path / "whole")
    assert not list((tmp_path / "killed").glob("*.resume"))  # removed once the entry is stored


def test_the_paper_scale_keeps_checkpoints_and_they_are_not_part_of_a_cells_identity(make_cfg):
    from unlearn_bench.tracking import cell_id

    paper = make_cfg("scale=paper", tiny=False)
    assert paper.checkpoint.every_epochs == 5
    assert cell_id(paper) == cell_id(make_cfg("scale=paper", "checkpoint.every_epochs=0", tiny=False))
