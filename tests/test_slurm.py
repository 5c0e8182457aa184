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


POOL_ARGS = ["eval=pool", "eval.pool_size=4", "method=ft", "logger=none", "progress=false", "train.epochs=3",
             "train.batch_size=64", "++model.widths=[8,16]", "++method.epochs=1", "eval.retain_sample=50"]


def pool_args(tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "unlearn_bench.run", *POOL_ARGS, *extra,
            f"paths.cache_dir={tmp_path / 'cache'}", f"paths.records_dir={tmp_path / 'records'}",
            f"paths.output_dir={tmp_path / 'outputs'}", f"paths.data_root={SHARED_DATA}"]


def test_a_pool_on_slurm_survives_a_cancelled_member_and_scores_as_locally(slurm_cluster, tmp_path):
    """A pool of 4 on digits, one SLURM job per member: one member cancelled fails the run with one line,
    the rerun submits only the missing members, and every score equals the local launcher's."""
    name = "pool-ft"
    slurm = ["eval.launcher=slurm", "eval.slurm.partition=local", "eval.slurm.mem_gb=1",
             "eval.slurm.timeout_min=10", f"eval.slurm.folder={tmp_path / 'submitit'}/%j"]
    proc = subprocess.Popen(pool_args(tmp_path / "slurm", *slurm), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    def array_tasks() -> list[str]:  # one line per member, pending ones included (-r)
        out = subprocess.run(["squeue", "-h", "-r", "-n", name, "-o", "%i"], capture_output=True, text=True).stdout
        return out.split()

    deadline = time.time() + 180
    while time.time() < deadline and len(array_tasks()) < 6:
        time.sleep(0.1)
    tasks = array_tasks()
    assert len(tasks) >= 6, f"the pool did not submit its members: {tasks}"
    last = max(tasks, key=lambda task: int(task.rpartition("_")[2]))
    subprocess.run(["scancel", last], check=True)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode != 0, "a cancelled member must fail the pool"
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "did not complete" in error_lines[0] and "Traceback" not in err, err[-3000:]
    assert not list((tmp_path / "slurm" / "records").glob("*.json"))

    again = subprocess.run(pool_args(tmp_path / "slurm", *slurm), cwd=tmp_path, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    submitted = [line for line in again.stdout.splitlines() if "submitted to SLURM" in line]
    assert submitted and submitted[0].startswith("pool: 1 of 12 members"), again.stdout[-2000:]

    local = subprocess.run(pool_args(tmp_path / "local", "eval.workers=1"), cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
    assert local.returncode == 0, local.stderr[-3000:]
    import json

    (on_slurm,) = [json.loads(p.read_text()) for p in (tmp_path / "slurm" / "records").glob("*.json")]
    (at_home,) = [json.loads(p.read_text()) for p in (tmp_path / "local" / "records").glob("*.json")]
    assert on_slurm["cell_id"] == at_home["cell_id"]  # the launcher is not part of the cell
    for row in ("metrics", "retrain_metrics", "retrain2_metrics", "original_metrics"):
        mine = {k: v for k, v in on_slurm[row].items() if k != "RTE"}
        theirs = {k: v for k, v in at_home[row].items() if k != "RTE"}
        assert mine == theirs, row


def test_a_bad_slurm_setting_is_one_line_before_any_job(tmp_path):
    done = subprocess.run(pool_args(tmp_path, "eval.launcher=slurm", "eval.slurm.timeout_min=0"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "eval.slurm.timeout_min=0" in lines[0], done.stderr
    done = subprocess.run(pool_args(tmp_path, "eval.slurm.partiton=gpu"), cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "partiton" in lines[0], done.stderr
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("pool-*"))
