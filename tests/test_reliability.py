"""Bad input gives one clear line and a non-zero exit; faults lose nothing; reruns are exact."""

import json
import logging
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from unlearn_bench.cache import ModelCache, stable_hash
from unlearn_bench.data import select_forget
from unlearn_bench.errors import UserError
from unlearn_bench.metrics.core import accuracy, avg_gap
from unlearn_bench.run import run, unknown_group_choice

from .conftest import SHARED_DATA, unless_given

ROOT = Path(__file__).resolve().parent.parent
TINY_CLI = ["logger=none", "progress=false", "train.epochs=3", "train.batch_size=64", "++method.epochs=1",
            "++model.widths=[8,16]"]


def cli(tmp_path: Path, *overrides: str, timeout: int = 300) -> subprocess.CompletedProcess:
    other_model = any(o.startswith("model=") and o != "model=small_cnn" for o in overrides)
    tiny = [a for a in TINY_CLI if not (other_model and a.startswith("++model.widths"))]  # a key it reads
    defaults = [*tiny, f"paths.cache_dir={tmp_path / 'cache'}", f"paths.records_dir={tmp_path / 'records'}",
                f"paths.output_dir={tmp_path / 'outputs'}", f"paths.data_root={SHARED_DATA}"]
    args = [sys.executable, "-m", "unlearn_bench.run", *unless_given(defaults, overrides), *overrides]
    return subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


# --- bad input: (overrides, text the one-line error must contain) ----------------------------------------
BAD_INPUTS = {
    "forget rate >= 1": (["forget_rate.rate=1.5"], "forget_rate.rate=1.5"),
    "forget rate <= 0": (["forget_rate.rate=0"], "forget_rate.rate=0"),
    "class id out of range": (["forget_rate=class", "forget_rate.class_id=10"], "forget_rate.class_id=10"),
    "forget count > |D|": (["forget_rate.rate=null", "forget_rate.count=100000"], "forget_rate.count=100000"),
    "a rate and a count": (["forget_rate.count=200"], "forget_rate.count=200"),
    "a diffusion attack on a classifier": (["attack=dimra"], "attack='dimra'"),
    "IU without retain samples": (["method=iu", "method.num_samples=0"], "method.num_samples=0"),
    "a RUM stratum that never runs": (["method=rum", "method.order=[mid]"], "method.high='salun'"),
    "a speed switch that is not one": (["perf.amp=maybe"], "perf.amp='maybe'"),
    "missing data file": (["dataset=mnist", "paths.data_root=/nonexistent"], "dataset.file"),
    "unknown timm model": (["model=timm", "model.arch=no_such_net"], "model.arch='no_such_net'"),
    "channel mismatch": (["dataset.channels=3"], "dataset.channels=3"),
    "zero epochs": (["train.epochs=0"], "train.epochs=0"),
    "negative learning rate": (["method.lr=-0.1"], "method.lr=-0.1"),
    "unknown device": (["device=tpu"], "device='tpu'"),
    "unknown scheduler": (["train.scheduler=warmup"], "train.scheduler='warmup'"),
    "bad rl switch": (["method=rl", "method.labels=some"], "method.labels='some'"),
    "bad mask ratio": (["method.mask_ratio=1.5"], "method.mask_ratio=1.5"),
    "bad iu recursion": (["method=iu", "method.recursion=fast"], "method.recursion='fast'"),
    "bad manif direction": (["method=manif_smc", "method.direction=up"], "method.direction='up'"),
    "bad manif smc": (["method=manif/blend_away", "method.smc=linear"], "method.smc='linear'"),
    "seed not an integer": (["seed=abc"], "seed='abc'"),
    "zero relearn steps": (["relearn.enabled=true", "relearn.steps=0"], "relearn.steps=0"),
    "bad dimum data": (["task=generation", "method=dimum", "method.alt_data=blank"], "method.alt_data='blank'"),
    "bad dimra aux": (["task=generation", "method=esd", "attack=dimra", "attack.aux=test"], "attack.aux='test'"),
}
# switches the config alone decides: they must fail before the reference models train
BEFORE_TRAINING = ["bad rl switch", "bad mask ratio", "bad iu recursion", "bad manif direction", "bad manif smc",
                   "zero relearn steps", "bad dimum data", "bad dimra aux", "negative learning rate"]


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_clear_user_error(make_cfg, case):
    overrides, expected = BAD_INPUTS[case]
    with pytest.raises(UserError) as info:
        run(make_cfg(*overrides))
    message = str(info.value)
    assert expected in message and "\n" not in message
    assert "accepted" in message or "not found" in message


@pytest.mark.parametrize("case", BEFORE_TRAINING)
def test_method_and_attack_switches_fail_before_any_training(make_cfg, tmp_path, case):
    overrides, expected = BAD_INPUTS[case]
    with pytest.raises(UserError, match=expected.replace("(", r"\(")):
        run(make_cfg(*overrides))
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.glob("*.pt")), sorted(p.name for p in cache.iterdir())


@pytest.mark.parametrize("case", ["forget rate >= 1", "missing data file", "unknown timm model"])
def test_bad_input_through_the_cli_is_one_line_and_exit_2(tmp_path, case):
    overrides, expected = BAD_INPUTS[case]
    done = cli(tmp_path, *overrides)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines


@pytest.mark.parametrize(("override", "expected"), [
    ("train.epoch=3", "train.epoch is not a key of this config (did you mean epochs?); accepted under train: "),
    ("lr=[1", "error: no viable alternative"),
])
def test_hydra_override_errors_are_one_line_and_exit_2(tmp_path, override, expected):
    done = cli(tmp_path, override)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    if override.startswith("train.epoch="):
        assert "did you mean epochs?" in lines[0]


@pytest.mark.parametrize("group", ["dataset", "model", "method", "augmentation", "forget_rate", "logger",
                                   "scale", "experiment", "task", "attack", "hparams_search"])
def test_unknown_option_in_every_config_group(group):
    message = unknown_group_choice(["prog", "seed=1", f"{group}=no_such_option"])
    assert message is not None and "\n" not in message
    assert message.startswith(f"error: {group}='no_such_option' is not valid; accepted: ")
    accepted = sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))
    assert accepted and all(name in message for name in accepted)
    assert unknown_group_choice(["prog", f"{group}={accepted[0]}"]) is None


def test_unknown_option_through_the_cli(tmp_path):
    done = cli(tmp_path, "augmentation=trivial")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "did you mean trivialaug" in lines[0]
    assert lines[0].index("did you mean") < lines[0].index("accepted:")  # the hint before the long list


@pytest.mark.parametrize("key", ["paths.cache_dir", "paths.records_dir"])
def test_unwritable_folders(tmp_path, key):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = cli(tmp_path, f"{key}={blocker / 'sub'}")
    assert done.returncode == 2 and key in done.stderr and "not writable" in done.stderr


# --- faults ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_signal_during_training_leaves_no_partial_checkpoint_or_record(tmp_path, sig):
    args = [sys.executable, "-m", "unlearn_bench.run", *unless_given(TINY_CLI, ["train.epochs=400"]), "train.epochs=400", "method=ft",
            f"paths.cache_dir={tmp_path / 'cache'}", f"paths.records_dir={tmp_path / 'records'}"]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    time.sleep(6)  # inside the 400-epoch training of the original model
    os.killpg(proc.pid, sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert not list((tmp_path / "cache").glob("*.pt")) and not list((tmp_path / "records").glob("*.json"))
    done = cli(tmp_path, "method=ft")
    assert done.returncode == 0 and "original: trained" in done.stdout


def test_corrupted_checkpoint_is_detected_and_retrained(make_cfg, caplog):
    first = run(make_cfg("method=ft"))
    cache_dir = Path(make_cfg().paths.cache_dir)
    checkpoint = next(cache_dir.glob("original-*.pt"))
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])  # truncated
    with caplog.at_level(logging.WARNING):
        second = run(make_cfg("method=ft", "force=true"))
    assert "corrupted" in caplog.text and checkpoint.name in caplog.text
    assert second["metrics"] | {"RTE": 0} == first["metrics"] | {"RTE": 0}  # retrained to the same weights


def _race(cache_dir: str, marker_dir: str, barrier) -> None:
    cache = ModelCache(Path(cache_dir))

    def train(model):
        (Path(marker_dir) / f"trained-{os.getpid()}").touch()
        time.sleep(1.0)
        return {}

    barrier.wait()
    cache.get_or_train("original", {"k": 1}, lambda: torch.nn.Linear(2, 2), train)


def test_two_processes_racing_for_one_entry_train_it_once(tmp_path):
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_race, args=(str(tmp_path / "cache"), str(tmp_path), barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    assert len(list(tmp_path.glob("trained-*"))) == 1


def test_diverging_method_is_recorded_not_crashed(make_cfg):
    record = run(make_cfg("method=ga", "method.lr=1e12", "method.epochs=3"))
    assert record["diverged"] is True
    assert 0.0 <= record["metrics"]["UA"] <= 100.0 and "avg_gap" in record["metrics"]


# --- determinism and properties -------------------------------------------------------------------------
def test_same_config_and_seed_are_bit_identical(make_cfg, tmp_path):
    a = run(make_cfg("method=salun", "augmentation=trivialaug"))
    b = run(make_cfg("method=salun", "augmentation=trivialaug", "force=true",
                     f"paths.cache_dir={tmp_path / 'fresh'}"))
    assert a["models"]["original"]["key"] == b["models"]["original"]["key"]
    for part in ("metrics", "retrain_metrics", "original_metrics"):
        assert {k: v for k, v in a[part].items() if k != "RTE"} == {k: v for k, v in b[part].items() if k != "RTE"}


@settings(max_examples=60, deadline=None)
@given(n=st.integers(10, 500), rate=st.floats(0.01, 0.99), seed=st.integers(0, 2**31 - 1))
def test_forget_selection_properties(n, rate, seed):
    labels = torch.arange(n) % 7
    cfg = OmegaConf.create({"mode": "random", "rate": rate, "count": None, "class_id": None})
    count = round(rate * n)
    if not 1 <= count < n:
        return
    index = select_forget(labels, cfg, seed, 7)
    assert len(index) == count == len(set(index.tolist()))
    assert index.min() >= 0 and index.max() < n and torch.equal(index, index.sort().values)
    assert torch.equal(index, select_forget(labels, cfg, seed, 7))


@settings(max_examples=60, deadline=None)
@given(logits=st.lists(st.lists(st.floats(-50, 50), min_size=3, max_size=3), min_size=1, max_size=40),
       data=st.data())
def test_accuracy_is_a_percentage(logits, data):
    labels = torch.tensor(data.draw(st.lists(st.integers(0, 2), min_size=len(logits), max_size=len(logits))))
    value = accuracy(torch.tensor(logits), labels)
    assert 0.0 <= value <= 100.0


metric_values = st.fixed_dictionaries({k: st.floats(0, 100) for k in ("UA", "RA", "TA", "MIA")})


@settings(max_examples=100, deadline=None)
@given(a=metric_values, b=metric_values)
def test_avg_gap_zero_on_itself_symmetric_and_bounded(a, b):
    over = ["UA", "RA", "TA", "MIA"]
    assert avg_gap(a, a, over) == 0.0
    assert avg_gap(a, b, over) == pytest.approx(avg_gap(b, a, over))
    assert 0.0 <= avg_gap(a, b, over) <= 100.0


@settings(max_examples=50, deadline=None)
@given(parts=st.dictionaries(st.text(min_size=1, max_size=8), st.one_of(st.integers(), st.text(max_size=8),
                                                                           st.lists(st.integers(), max_size=3)),
                             max_size=6))
def test_cache_key_is_stable_and_order_independent(parts):
    reordered = dict(reversed(list(parts.items())))
    assert stable_hash(parts) == stable_hash(reordered) == stable_hash(json.loads(json.dumps(parts)))


def test_a_full_disk_names_the_file_it_could_not_write(tmp_path, monkeypatch):
    import errno

    from unlearn_bench import cache

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache.os, "fsync", full)
    with pytest.raises(OSError) as err:
        cache.atomic_write_bytes(tmp_path / "entry.pt", b"weights")
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "entry.pt")
    assert not list(tmp_path.iterdir())  # nothing half-written left behind
