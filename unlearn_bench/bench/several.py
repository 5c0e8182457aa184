"""(d) K models of one architecture trained at once, by K processes, by vmap over stacked weights or by one
CUDA graph, against one model's pure step (c) in the same precision.
"""

from __future__ import annotations

import queue
import time

import torch
from torch import nn

from unlearn_bench.bench.throughput import make_step, new_model_step, pure_step_images, timed_images
from unlearn_bench.models import build_model

MULTI = ("processes", "vmap", "graphs")


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

