#!/usr/bin/env python
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
Writes <out>/bench.{md,json} (default results/bench).

    python scripts/bench.py                      # CPU: small CNN on a CIFAR-10 subset
    python scripts/bench.py --widths 64,128,256 --out results/bench/cnn_64_128_256   # a heavier CNN
    python scripts/bench.py --model resnet18 --batch-size 256 --steps 60 --workers 8 --amp --channels-last  # GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from unlearn_bench.data import load_dataset  # noqa: E402
from unlearn_bench.data.augment import build_augment  # noqa: E402
from unlearn_bench.models import build_model  # noqa: E402

AUGMENTATIONS = ["none", "default", "trivialaug", "randaugment", "augmix"]
MULTI = ("processes", "vmap", "graphs")
CIFAR10_EPOCH = 50_000  # training images per epoch of the paper recipe


def conventional_transform(name: str, aug_cfg, mean, std):
    """The reference pipeline: per-sample PIL transforms (torchvision v1 API, as the reference code)."""
    from torchvision import transforms as T

    steps = [] if name == "none" else [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]
    steps += {"none": [], "default": [], "trivialaug": [T.TrivialAugmentWide()],
              "randaugment": [T.RandAugment(num_ops=aug_cfg.get("num_ops", 2), magnitude=aug_cfg.get("magnitude", 9))],
              "augmix": [T.AugMix()]}[name]
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])


class PILDataset(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        from PIL import Image

        self.images = [Image.fromarray(img) for img in images]
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), int(self.labels[i])


def make_step(model: nn.Module, device: torch.device, amp: bool, channels_last: bool = False,
              graph_safe: bool = False):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    # autocast's weight-cast cache must be off inside a CUDA graph capture
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp, cache_enabled=not graph_safe)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        if channels_last:  # inputs in the weights' layout, as the runner's perf.channels_last does
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def new_model_step(model_cfg, device: torch.device, amp: bool, channels_last: bool, graph_safe: bool = False):
    """A freshly initialised model (the same weights every time: seed 0) and its training step."""
    torch.manual_seed(0)
    model = build_model(model_cfg, 3, 10, 32).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return make_step(model, device, amp, channels_last, graph_safe)


def pure_step_images(step, batch_size: int, steps: int, device: torch.device) -> float:
    """(c): images/s of `step` on pre-made tensors, no data work at all."""
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)

    def limit():
        while True:
            step(x, y)
            yield

    return timed_images(limit, steps, batch_size, device)


def timed_images(run_batches, steps: int, batch_size: int, device: torch.device, warmup: int = 3) -> float:
    """Images per second over `steps` steps after `warmup` steps."""
    iterator = run_batches()
    for _ in range(warmup):
        next(iterator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - start)


def stacked_models_images(model_cfg, device: torch.device, k: int, batch_size: int, steps: int) -> float:
    """(d) Aggregate images/s of K models trained at once: torch.func.vmap over their stacked weights and
    buffers (batch-norm statistics included), plain SGD on pre-made tensors, as (c) but K-fold. Float32:
    batch norm under vmap refuses the bf16 activations of autocast (torch 2.14)."""
    import copy

    from torch.func import functional_call, grad, stack_module_state, vmap

    torch.manual_seed(0)
    models = [build_model(model_cfg, 3, 10, 32).to(device).train() for _ in range(k)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")

    def loss(p, b, x, y):
        return nn.functional.cross_entropy(functional_call(base, (p, b), (x,)), y)

    gradients = vmap(grad(loss), randomness="different")
    x = torch.randn(k, batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (k, batch_size), device=device)

    def run_steps():
        while True:
            grads = gradients(params, buffers, x, y)
            with torch.no_grad():
                torch._foreach_add_(list(params.values()), list(grads.values()), alpha=-0.01)
            yield

    return timed_images(run_steps, steps, k * batch_size, device)


def graphed_models_images(model_cfg, device: torch.device, k: int, batch_size: int, steps: int, amp: bool,
                          channels_last: bool) -> float:
    """(d) graphs: the training steps of K separate models (SGD with momentum, as (c)) captured once in
    one CUDA graph and replayed, so a step costs no Python and one launch for all K models."""
    torch.manual_seed(0)
    models = [build_model(model_cfg, 3, 10, 32).to(device).train() for _ in range(k)]
    if channels_last:
        models = [m.to(memory_format=torch.channels_last) for m in models]
    steps_k = [make_step(m, device, amp, channels_last, graph_safe=True) for m in models]
    x = torch.randn(k, batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (k, batch_size), device=device)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture stream: momentum buffers, cuDNN plans
        for _ in range(3):
            for i, step in enumerate(steps_k):
                step(x[i], y[i])
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i, step in enumerate(steps_k):
            step(x[i], y[i])

    def run_steps():
        while True:
            graph.replay()
            yield

    return timed_images(run_steps, steps, k * batch_size, device)


def _process_worker(model_cfg, device_name: str, batch_size: int, steps: int, amp: bool, channels_last: bool,
                    threads: int, barrier, times) -> None:
    """One of the K processes: warm up, wait for the others, then time `steps` pure training steps."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    step = new_model_step(model_cfg, device, amp, channels_last)
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    for _ in range(3):
        step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    barrier.wait()
    start = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
    for _ in range(steps):
        step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    times.put((start, time.perf_counter()))


def processes_images(model_cfg, device: torch.device, k: int, batch_size: int, steps: int, amp: bool,
                     channels_last: bool) -> float:
    """(d) processes: K processes each training its own model at once; images of all K over the span from
    the first start to the last finish. CPU threads are split between them."""
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    barrier, times = context.Barrier(k), context.Queue()
    threads = max(1, torch.get_num_threads() // k)
    workers = [context.Process(target=_process_worker, args=(model_cfg, str(device), batch_size, steps, amp,
                                                             channels_last, threads, barrier, times))
               for _ in range(k)]
    for worker in workers:
        worker.start()
    spans: list[tuple[float, float]] = []
    try:
        while len(spans) < k:
            try:
                spans.append(times.get(timeout=5))
            except queue.Empty:
                if any(w.exitcode not in (None, 0) for w in workers):  # one died: the rest wait forever
                    raise RuntimeError(f"a worker failed (exit codes {[w.exitcode for w in workers]})") from None
    finally:
        for worker in workers:
            if len(spans) < k:
                worker.terminate()
            worker.join()
    return k * steps * batch_size / (max(end for _, end in spans) - min(start for start, _ in spans))


def one_model_limit(model_cfg, device: torch.device, args, amp: bool, channels_last: bool) -> float:
    """(c) for one model in the given precision and layout: what K models at once are compared with."""
    return pure_step_images(new_model_step(model_cfg, device, amp, channels_last), args.batch_size, args.steps,
                            device)


def several_models(approach: str, model_cfg, device: torch.device, args) -> dict:
    """One (d) measurement against (c) in the same precision; an approach this device cannot run, or one
    that fails, is reported, not hidden."""
    amp = args.amp and approach != "vmap"  # vmap runs float32 (see stacked_models_images)
    channels_last = args.channels_last and approach != "vmap"
    row = {"approach": approach, "precision": "bf16 autocast" if amp else "float32", "aggregate_img_s": None,
           "one_model_limit_img_s": None, "aggregate_over_limit": None, "note": ""}
    if approach == "graphs" and device.type != "cuda":
        return {**row, "note": "not measured: needs CUDA"}
    try:
        if approach == "vmap":
            value = stacked_models_images(model_cfg, device, args.models, args.batch_size, args.steps)
        elif approach == "processes":
            value = processes_images(model_cfg, device, args.models, args.batch_size, args.steps, amp, channels_last)
        else:
            value = graphed_models_images(model_cfg, device, args.models, args.batch_size, args.steps, amp,
                                          channels_last)
        limit = one_model_limit(model_cfg, device, args, amp, channels_last)
    except Exception as err:  # a failed approach must not cost the other figures of a GPU run
        return {**row, "note": f"failed: {type(err).__name__}: {err}"[:300]}
    return {**row, "aggregate_img_s": value, "one_model_limit_img_s": limit, "aggregate_over_limit": value / limit}


def bench_one(name: str, args, data, device, mean, std, model_cfg) -> dict:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        aug_cfg = compose("config", overrides=[f"augmentation={name}"]).augmentation
    images_np = data.train.images.permute(0, 2, 3, 1).numpy()
    labels_np = data.train.labels.numpy()
    mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)

    def new_step():
        return new_model_step(model_cfg, device, args.amp, args.channels_last)

    # (a) conventional
    step = new_step()
    loader = torch.utils.data.DataLoader(PILDataset(images_np, labels_np, conventional_transform(name, aug_cfg, mean, std)),
                                         batch_size=args.batch_size, shuffle=True, drop_last=True,
                                         num_workers=args.workers, pin_memory=device.type == "cuda",
                                         persistent_workers=args.workers > 0)

    def conventional():
        while True:
            for x, y in loader:
                step(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
                yield

    a = timed_images(conventional, args.steps, args.batch_size, device)

    # (b) suite path
    step = new_step()
    augment = build_augment(aug_cfg, 32, 3)
    gpu_images, gpu_labels = data.train.images.to(device), data.train.labels.to(device)

    def suite():
        while True:
            order = torch.randperm(len(gpu_labels), device=device)
            for s in range(0, len(order) - args.batch_size + 1, args.batch_size):
                index = order[s:s + args.batch_size]
                x = (augment(gpu_images[index]).float().div_(255.0) - mean_t) / std_t
                step(x, gpu_labels[index])
                yield

    b = timed_images(suite, args.steps, args.batch_size, device)

    c = pure_step_images(new_step(), args.batch_size, args.steps, device)  # (c) the model's limit
    return {"augmentation": name, "conventional_img_s": a, "suite_img_s": b, "limit_img_s": c,
            "conventional_s_per_epoch": CIFAR10_EPOCH / a, "suite_s_per_epoch": CIFAR10_EPOCH / b,
            "suite_over_conventional": b / a, "suite_over_limit": b / c}


def full_cell_seconds(device_arg: str) -> float:
    """Wall time of one preset cell from an empty cache: original + retrain + SalUn at CPU scale."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "unlearn_bench.run", "experiment=salun_table", "method=salun",
                        "logger=none", "progress=false", f"device={device_arg}", f"paths.cache_dir={tmp}/cache",
                        f"paths.records_dir={tmp}/records", f"paths.output_dir={tmp}/out"],
                       cwd=ROOT, check=True, capture_output=True)
        return time.perf_counter() - start


POOL_SETTING = ["scale=cpu", "dataset.train_size=1000", "method=ft"]  # the setting of results/pool


def pool_figure(n: int, overrides: list[str], data_root: str) -> dict:
    """(e) A pool's wall time against N × one model's: the retrain models of `eval=pool`, trained through
    the runner's own pool code from an empty cache, (1) one model in this process on one thread, (2) one
    model on all cores' threads, (3) N models with one worker process per core. Ideal: (3) trains N
    models in N × (1) / cores."""
    import tempfile

    from hydra import compose, initialize_config_dir

    from unlearn_bench.pool_eval import available_cores, run_members

    cores = available_cores()

    def seconds(extra: list[str], jobs: list[tuple[str, int]], tmp: str, tag: str) -> float:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("config", overrides=[*overrides, "eval=pool", f"eval.pool_size={max(n, 3)}", "logger=none",
                                               "progress=false", f"paths.data_root={data_root}",
                                               f"paths.cache_dir={tmp}/{tag}", *extra])
        start = time.perf_counter()
        run_members(cfg, jobs)
        return time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        one = seconds(["eval.workers=1"], [("retrain", 0)], tmp, "one")
        one_all = seconds(["eval.workers=1", f"num_threads={cores}"], [("retrain", 0)], tmp, "all")
        pool = seconds([f"eval.workers={cores}"], [("retrain", i) for i in range(n)], tmp, "pool")
    return {"pool_size": n, "cores": cores, "overrides": overrides, "one_model_one_thread_s": one,
            f"one_model_{cores}_threads_s": one_all, "pool_wall_s": pool,
            "pool_over_ideal": n * one / (cores * pool),  # 1.0 = N models in N × (1) / cores
            "pool_over_best_single_process": n * min(one, one_all) / pool}  # speed-up over one process


def machine() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cores": os.cpu_count(),
            "cpu": platform.processor() or platform.machine()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=os.environ.get("UNLEARN_BENCH_DATA", str(ROOT.parent / "shared" / "data")))
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
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    parser.add_argument("--pool", type=int, default=0, metavar="N",
                        help="(e) only: the wall time of an N-model retrain pool (eval=pool) against N x one model's, "
                             f"at the setting of results/pool ({' '.join(POOL_SETTING)}); writes <out>/pool.{{md,json}}")
    args = parser.parse_args(argv)
    if args.pool:
        return pool_main(args)
    approaches = [a.strip() for a in args.multi.split(",") if a.strip()]
    if unknown := [a for a in approaches if a not in MULTI]:
        parser.error(f"--multi={','.join(unknown)} is not valid; accepted: {', '.join(MULTI)}")

    device = torch.device(args.device)
    cache = Path(os.environ.get("UNLEARN_BENCH_CACHE", Path.home() / ".cache" / "unlearn_bench"))
    ds_cfg = OmegaConf.load(ROOT / "conf" / "dataset" / "cifar10.yaml")
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
              "stacked_models": stacked, "command": " ".join(["python", *sys.argv])}
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


def pool_main(args: argparse.Namespace) -> int:
    result = {"machine": machine(), **pool_figure(args.pool, POOL_SETTING, args.data_root),
              "command": " ".join(["python", *sys.argv])}
    cores = result["cores"]
    lines = ["# (e) Training a pool of models: wall time against N × one model", "",
             f"Command: `{result['command']}`", "", f"Machine: {result['machine']}", "",
             f"Setting: `{' '.join(POOL_SETTING)}` (the retrain models of `eval=pool`), from an empty cache.", "",
             "| measurement | seconds |", "|---|---|",
             f"| (1) one model, one process, one thread | {result['one_model_one_thread_s']:.1f} |",
             f"| (2) one model, one process, {cores} threads | {result[f'one_model_{cores}_threads_s']:.1f} |",
             f"| (3) a pool of {args.pool} models, {cores} worker processes of one thread | {result['pool_wall_s']:.1f} |",
             "",
             f"Pool throughput over the ideal ({args.pool} × (1) / {cores} cores): **{result['pool_over_ideal']:.2f}** "
             f"(target ≥ 0.9); speed-up over the best single process (one model at a time, the faster of (1) "
             f"and (2)): {result['pool_over_best_single_process']:.2f}×.", ""]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pool.json").write_text(json.dumps(result, indent=2))
    (args.out / "pool.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
