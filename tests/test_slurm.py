"""hydra/launcher=slurm against a real single-node SLURM (scripts/slurm_local.sh), not a mock.

CI runs as root and starts the cluster (installing the Debian packages if they are missing); elsewhere,
without root, the test is skipped with the reason shown. A two-cell multirun goes through the submitit
launcher, one job is cancelled, the multirun fails with one line, and a rerun finishes the cancelled cell
while skipping the finished one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def slurm_cluster():
    if os.geteuid() != 0:
        pytest.skip("a local SLURM needs root to start its daemons (CI runs as root)")
    done = subprocess.run(["bash", str(ROOT / "scripts" / "slurm_local.sh"), "start"], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    yield
    subprocess.run(["bash", str(ROOT / "scripts" / "slurm_local.sh"), "stop"], capture_output=True, timeout=120)


def squeue(name: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True).stdout
    return sorted(out.split())


def test_slurm_multirun_cancel_and_resume(slurm_cluster, tmp_path):
    name = f"ub-test-{os.getpid()}"
    args = [sys.executable, "-m", "unlearn_bench.run", "-m", "hydra/launcher=slurm", "method=ft", "seed=0,1",
            "logger=none", "progress=false", "train.epochs=3", "train.batch_size=64", "++model.widths=[8,16]",
            "hydra.launcher.partition=local", "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10", f"hydra.launcher.name={name}",
            f"hydra.launcher.submitit_folder={tmp_path / 'submitit'}/%j",
            f"paths.cache_dir={tmp_path / 'cache'}", f"paths.records_dir={tmp_path / 'records'}",
            f"paths.output_dir={tmp_path / 'outputs'}", f"paths.data_root={SHARED_DATA}"]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(squeue(name)) < 2:
        time.sleep(0.2)
    jobs = squeue(name)
    assert len(jobs) == 2, f"the multirun did not submit two jobs: {jobs}"
    subprocess.run(["scancel", jobs[-1]], check=True)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0, "a cancelled cell must fail the multirun"
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "did not complete" in error_lines[0] and "Traceback" not in err, err[-3000:]
    records = tmp_path / "records"
    finished = {p.name: p.read_bytes() for p in records.glob("*.json")}
    assert len(finished) == 1, "the job that was not cancelled finishes and writes its record"

    again = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(list(records.glob("*.json"))) == 2
    for file, payload in finished.items():
        assert (records / file).read_bytes() == payload  # the finished cell was skipped, not redone
