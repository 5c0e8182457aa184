"""The supervised training loop shared by the original model, the retrain models and the methods that
retrain (docs/protocol.md's recipe), with checkpoints that resume bit for bit."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn
from tqdm.auto import tqdm

from unlearn_bench.batching import batch_indices
from unlearn_bench.cache import atomic_write_bytes
from unlearn_bench.checks import check_positive
from unlearn_bench.context import Context
from unlearn_bench.data import ImageData
from unlearn_bench.optim import make_scheduler, sgd
from unlearn_bench.perf import training_model
from unlearn_bench.rng import rng_states, set_rng_states


def fit(model: nn.Module, data: ImageData, cfg: DictConfig, ctx: Context, desc: str,
        record_examples: bool = False, resume: Path | None = None, checkpoint_every: int = 0) -> dict:
    """Standard supervised training (the recipe of docs/protocol.md); returns a few statistics for the record.
    `record_examples` adds `example_confidence`: each example's true-label probability averaged over the
    epochs, read from the training forward passes (the cheap memorisation proxy of docs/difficulty.md).

    `resume` with `checkpoint_every` = k > 0: every k epochs the whole training state (weights, optimiser,
    schedule, every random stream, the loss curve) is written atomically to `resume`, and a training that
    finds that file continues from it, so a run killed or preempted mid-way and started again ends with
    the weights an uninterrupted run gives, bit for bit. The file is removed once training ends."""
    check_positive(cfg, "train", ("epochs", "lr", "batch_size"))
    model.train()
    optimizer = sgd(model.parameters(), cfg)
    steps_per_epoch = -(-len(data) // cfg.batch_size)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.get("label_smoothing", 0.0))
    last_loss, curve = float("nan"), []
    forward = training_model(model, ctx.perf)
    # on the training device: a copy to the host every step would stall a GPU (each batch's indices are distinct,
    # so the sum does not depend on the order of the additions)
    confidence_sum = torch.zeros(len(data), dtype=torch.float64, device=ctx.device) if record_examples else None
    first_epoch = 0
    if resume is not None and checkpoint_every and resume.is_file():
        state = torch.load(resume, map_location="cpu", weights_only=False)  # our own file, written below
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        curve, first_epoch = state["curve"], state["epoch"]
        last_loss = curve[-1] if curve else last_loss
        if confidence_sum is not None:
            confidence_sum = state["confidence_sum"].to(confidence_sum.device)
        set_rng_states(state["rng"])
        print(f"{desc}: resumed at epoch {first_epoch} of {cfg.epochs} from {resume}")
    bar = tqdm(range(first_epoch, cfg.epochs), desc=desc, disable=not ctx.progress, leave=False)
    for epoch in bar:
        total, seen = 0.0, 0
        for index in batch_indices(len(data), cfg.batch_size, ctx.device):  # what batches() yields, with indices
            x, y = ctx.inputs(data.images[index]), data.labels[index]
            logits = forward(x)
            loss = loss_fn(logits, y)
            if confidence_sum is not None:
                with torch.no_grad():
                    p_true = torch.softmax(logits.detach().double(), 1).gather(1, y[:, None]).squeeze(1)
                    confidence_sum.index_add_(0, index.to(confidence_sum.device), p_true)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(y)
            seen += len(y)
        last_loss = total / max(seen, 1)
        curve.append(last_loss)
        bar.set_postfix(loss=f"{last_loss:.4f}")
        if resume is not None and checkpoint_every and (epoch + 1) % checkpoint_every == 0 and epoch + 1 < cfg.epochs:
            buffer = io.BytesIO()
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "curve": curve, "epoch": epoch + 1,
                        "confidence_sum": confidence_sum, "rng": rng_states()}, buffer)
            atomic_write_bytes(resume, buffer.getvalue())
    if resume is not None:
        resume.unlink(missing_ok=True)
    model.eval()
    stats = {"final_train_loss": last_loss, "loss_curve": curve}
    if confidence_sum is not None:
        stats["example_confidence"] = (confidence_sum.cpu() / max(cfg.epochs, 1)).tolist()
    return stats
