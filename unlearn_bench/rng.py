"""Random streams: a seed per stage (a stage draws the same randomness whether earlier stages ran or hit the
cache), a block that leaves the caller's streams where they were, and the streams' state for checkpoints."""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Iterator

import numpy as np
import torch


def derive_seed(seed: int, stage: str) -> int:
    """A per-stage seed, so a stage draws the same randomness whether earlier stages ran or hit the cache."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{stage}".encode()).digest()[:4], "little")


def seed_stage(seed: int, stage: str) -> None:
    derived = derive_seed(seed, stage)
    torch.manual_seed(derived)
    np.random.seed(derived)
    random.seed(derived)


@contextlib.contextmanager
def rng_aside() -> Iterator[None]:
    """Run a block that seeds its own draws (seed_stage) without moving the caller's random streams:
    torch (CPU), NumPy and Python's states are restored after it."""
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def rng_states() -> dict:
    """Every random stream a training epoch draws from (data order, augmentation, dropout)."""
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
