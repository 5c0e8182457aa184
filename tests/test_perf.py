"""Speed switches: bf16 autocast and channels_last run on CPU too, are not part of a cell's identity,
get their own model cache entries, and bad values are one-line errors."""

import pytest
import torch

from unlearn_bench import tracking
from unlearn_bench.errors import ConfigError
from unlearn_bench.perf import Perf, prepare_model, resolve
from unlearn_bench.protocol import prepare
from unlearn_bench.run import run


def test_auto_switches_follow_the_device():
    assert resolve({"amp": "auto", "compile": False}, torch.device("cpu")) == Perf()
    on = resolve({"amp": "auto", "channels_last": "auto", "compile": False, "pin_memory": "auto"},
                 torch.device("cuda"))
    assert on.amp and on.channels_last and on.pin_memory and not on.compile


def test_bad_switch_is_a_config_error(make_cfg):
    with pytest.raises(ConfigError, match="perf.amp"):
        run(make_cfg("perf.amp=maybe"))


def test_autocast_hooks_run_forwards_in_bf16_and_return_float32():
    seen = []
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(144, 3))
    model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    model = prepare_model(model, Perf(amp=True, channels_last=True), torch.device("cpu"))
    out = model(torch.randn(2, 1, 8, 8))
    assert seen == [torch.bfloat16] and out.dtype == torch.float32
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    copy = __import__("copy").deepcopy(model)
    assert copy(torch.randn(2, 1, 8, 8)).dtype == torch.float32 and not torch.is_autocast_cpu_enabled()


def test_switches_keep_the_cell_id_and_get_their_own_models(make_cfg, capsys):
    plain = make_cfg("method=ft")
    fast = make_cfg("method=ft", "perf.amp=true", "perf.channels_last=true")
    assert tracking.cell_id(plain) == tracking.cell_id(fast)
    cell = prepare(fast)
    assert cell.ctx.perf.amp and cell.ctx.inputs(cell.splits.train.images[:4], augment=False).is_contiguous(
        memory_format=torch.channels_last)
    run(plain)
    capsys.readouterr()
    record = run(make_cfg("method=ft", "perf.amp=true", "perf.channels_last=true", "force=true"))
    assert "original: trained" in capsys.readouterr().out  # not the float32 model's cache entry
    assert record["perf"]["amp"] and record["metrics"]["TA"] > 20.0  # it still learns in bf16


@pytest.mark.slow
def test_compiled_training_matches_the_plain_model_closely(make_cfg):
    """torch.compile (inductor, needs a C++ compiler on CPU) trains the same model to about the same metrics."""
    plain = run(make_cfg("method=ft"))
    compiled = run(make_cfg("method=ft", "perf.compile=true", "force=true"))
    assert compiled["perf"]["compile"]
    assert abs(compiled["original_metrics"]["TA"] - plain["original_metrics"]["TA"]) < 5.0
