"""Training throughput, side by side on one machine, for each augmentation:

  (a) conventional: a Dataset of PIL images, per-sample torchvision transforms, a DataLoader with workers
      (what the reference code runs);
  (b) suite: the whole dataset as a uint8 tensor on the device, batched per-image augmentation there;
  (c) limit: the model's pure training step on pre-made tensors (no data work at all).

Reports images/s, seconds per CIFAR-10 epoch (50,000 images) for (a) and (b), the ratios b/a and b/c,
peak memory, and the wall time of one full cell (original + retrain + SalUn) at the CPU scale of the
presets. Also (d): K models of the same architecture trained at once, the aggregate images/s against (c),
which is what a small model on a large GPU gains from, by each approach of `--multi`: processes (K
processes side by side on the device, each training its own model: what `hydra/launcher=joblib` with
`n_jobs=K` does with a sweep's cells), vmap (torch.func: stacked weights, one kernel launch per layer for
all K) and graphs (the K models' steps captured in one CUDA graph and replayed: no Python or launch
overhead; CUDA only, reported as not measured elsewhere).
Writes <out>/bench.{md,json} (default results/bench); --pool N writes the pool figure (e) instead.

    unlearn-bench-bench                      # CPU: small CNN on a CIFAR-10 subset
    unlearn-bench-bench --widths 64,128,256 --out results/bench/cnn_64_128_256   # a heavier CNN
    unlearn-bench-bench --model resnet18 --batch-size 256 --steps 60 --workers 8 --amp --channels-last  # GPU
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from unlearn_bench.bench.pool import POOL_SETTING, pool_main
from unlearn_bench.bench.several import MULTI, several_models
from unlearn_bench.bench.throughput import AUGMENTATIONS, bench_one, machine
from unlearn_bench.checks import integer
from unlearn_bench.config import CONFIG_DIR
from unlearn_bench.data import load_dataset
from unlearn_bench.data.augment import AUGMENTATIONS as PIPELINES
from unlearn_bench.errors import ArgumentParser, ConfigError, one_line_errors


def full_cell_seconds(device_arg: str) -> float:
    """Wall time of one preset cell from an empty cache: original + retrain + SalUn at CPU scale."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "unlearn_bench.run", "experiment=salun_table", "method=salun",
                        "logger=none", "progress=false", f"device={device_arg}", f"paths.cache_dir={tmp}/cache",
                        f"paths.records_dir={tmp}/records", f"paths.output_dir={tmp}/out"],
                       check=True, capture_output=True)
        return time.perf_counter() - start


def check_arguments(args: argparse.Namespace) -> None:
    """Every argument before any work: one line naming it and what is accepted (ConfigError)."""
    for name in ("train_size", "batch_size", "steps"):
        integer(1)(f"--{name.replace('_', '-')}", getattr(args, name))
    for name in ("models", "workers", "pool"):
        integer(0)(f"--{name}", getattr(args, name))
    widths = args.widths.split(",")
    if not all(w.strip().isdigit() and int(w) >= 1 for w in widths):
        raise ConfigError("--widths", args.widths, "comma-separated integers >= 1, e.g. 16,32,64")
    if unknown := [a for a in args.augmentations.split(",") if a not in PIPELINES]:
        raise ConfigError("--augmentations", ",".join(unknown), f"a comma list of {', '.join(PIPELINES)}")
    if unknown := [a.strip() for a in args.multi.split(",") if a.strip() and a.strip() not in MULTI]:
        raise ConfigError("--multi", ",".join(unknown), ", ".join(MULTI))


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=os.environ.get("UNLEARN_BENCH_DATA", str(CONFIG_DIR.parent.parent / "shared" / "data")))
    parser.add_argument("--train-size", type=int, default=4096)
    parser.add_argument("--model", default="small_cnn", choices=["small_cnn", "resnet18"])
    parser.add_argument("--widths", default="16,32,64", help="small_cnn widths (16,32,64: the CPU-scale presets)")
    parser.add_argument("--models", type=int, default=4, help="(d): models trained at once; 0 skips it")
    parser.add_argument("--multi", default=",".join(MULTI), help=f"(d): approaches, of {', '.join(MULTI)}")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60, help="timed steps per measurement")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the conventional pipeline")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--augmentations", default=",".join(AUGMENTATIONS))
    parser.add_argument("--skip-cell", action="store_true", help="do not time the full CPU-scale cell")
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    parser.add_argument("--pool", type=int, default=0, metavar="N",
                        help="(e) only: the wall time of an N-model retrain pool (eval=pool) against N x one model's, "
                             f"at the setting of results/pool ({' '.join(POOL_SETTING)}); writes <out>/pool.{{md,json}}")
    args = parser.parse_args(argv)
    check_arguments(args)  # a ConfigError is one line and exit code 2 (one_line_errors)
    if args.pool:
        return pool_main(args, argv)
    approaches = [a.strip() for a in args.multi.split(",") if a.strip()]

    device = torch.device(args.device)
    cache = Path(os.environ.get("UNLEARN_BENCH_CACHE", Path.home() / ".cache" / "unlearn_bench"))
    ds_cfg = OmegaConf.load(CONFIG_DIR / "dataset" / "cifar10.yaml")
    ds_cfg.train_size, ds_cfg.test_size = args.train_size, 16
    data = load_dataset(ds_cfg, Path(args.data_root), cache)
    widths = [int(w) for w in args.widths.split(",")]
    model_cfg = (OmegaConf.create({"name": "small_cnn", "widths": widths}) if args.model == "small_cnn"
                 else OmegaConf.create({"name": "resnet18", "cifar_stem": True}))
    rows = [bench_one(name, args, data, device, list(ds_cfg.mean), list(ds_cfg.std), model_cfg)
            for name in args.augmentations.split(",")]
    stacked = None
    if args.models > 0:
        stacked = {"models": args.models,
                   "approaches": [several_models(approach, model_cfg, device, args) for approach in approaches]}
    peak = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        peak["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    cell = None if args.skip_cell else full_cell_seconds(args.device)
    result = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
              "memory": peak, "full_cell_seconds": cell,
              "stacked_models": stacked, "command": shlex.join(["unlearn-bench-bench", *argv])}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(result, indent=2))
    import pandas as pd

    table = pd.DataFrame(rows).round(2)
    lines = ["# Training throughput: conventional pipeline vs the suite vs the model's limit", "",
             f"Command: `{result['command']}`", "",
             f"Machine: {result['machine']}", "",
             f"Model {args.model}{f' {widths}' if args.model == 'small_cnn' else ''}, batch {args.batch_size}, {args.steps} timed steps, CIFAR-10 subset of "
             f"{args.train_size}, {args.workers} DataLoader workers for (a); device {args.device}.", "",
             table.to_markdown(index=False), "",
             f"Peak memory: {peak}", ""]
    if stacked is not None:
        lines += [f"(d) {stacked['models']} models trained at once (pre-made tensors), against one model's "
                  "pure step (c) in the same precision:", ""]
        lines += [f"- {m['approach']} ({m['precision']}): "
                  + (f"{m['aggregate_img_s']:.0f} img/s in all, {m['aggregate_over_limit']:.2f}x the "
                     f"{m['one_model_limit_img_s']:.0f} img/s of (c)" if m["aggregate_img_s"] else m["note"])
                  for m in stacked["approaches"]]
        lines.append("")
    if cell is not None:
        lines.append(f"One full cell at CPU scale (original + retrain + SalUn, empty cache): {cell:.1f} s")
    (args.out / "bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0



if __name__ == "__main__":
    sys.exit(main())
