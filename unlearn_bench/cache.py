"""Content-addressed, locked, atomic store for trained models (the original and retrain models).

An entry is `<stage>-<key>.pt` (the state dict) plus `<stage>-<key>.json` (what determined it, the
checkpoint's sha256, training time). The key hashes everything that determines the weights, so any
method, augmentation-independent reuse or sweep point that needs the same model finds it. A checkpoint
whose sha256 does not match its metadata is never loaded: it is retrained, with a warning.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from filelock import FileLock
from torch import nn

from unlearn_bench.errors import UserError

log = logging.getLogger(__name__)

# Bump when a change to the training code changes the weights it produces: old entries stop matching.
TRAINER_VERSION = 1


def stable_hash(obj: object, length: int = 16) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


def current_umask() -> int:
    """The process umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would hide entries from a shared cache
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and not err.filename:  # a failed write() names no file: name the entry
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise


def atomic_write_json(path: Path, obj: object) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def ensure_writable(folder: Path, key: str) -> None:
    """Create `folder` and prove it writable before any work is spent on a cell (per-process probe name,
    so parallel cells never remove each other's probe)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise UserError(f"{key}={str(folder)!r} is not writable ({err.strerror}); accepted: a writable folder") from None


def machine(device: object) -> dict:
    """What the numbers were computed on beyond the package versions: the same config, seed and versions give
    the same model on one machine, but other float kernels (another CPU's instruction set, another GPU, another
    thread count) can give another model under the same cache key."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(str(device)))
    return info


class ModelCache:
    def __init__(self, root: Path):
        self.root = Path(root)
        ensure_writable(self.root, "paths.cache_dir")

    def paths(self, stage: str, key: str) -> tuple[Path, Path]:
        base = self.root / f"{stage}-{key}"
        return base.with_suffix(".pt"), base.with_suffix(".json")

    def load(self, stage: str, key: str, model: nn.Module) -> dict | None:
        """Load a valid entry into `model`; None if absent or damaged (damaged entries are warned about)."""
        weights, meta_path = self.paths(stage, key)
        if not weights.is_file() or not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            payload = weights.read_bytes()
            if hashlib.sha256(payload).hexdigest() != meta["sha256"]:
                raise ValueError("checksum mismatch")
            model.load_state_dict(torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True))
            return meta
        except Exception as err:  # truncated, corrupted or foreign: never trust it
            log.warning("cache entry %s is corrupted (%s); retraining it", weights.name, err)
            return None

    def meta(self, stage: str, key_parts: dict) -> dict | None:
        """The stored metadata of an entry (what its training recorded), without loading its weights; None
        where the entry is absent or its metadata unreadable."""
        weights, meta_path = self.paths(stage, self.key(stage, key_parts))
        try:
            return json.loads(meta_path.read_text()) if weights.is_file() else None
        except (OSError, ValueError):
            return None

    def save(self, stage: str, key: str, model: nn.Module, meta: dict) -> dict:
        weights, meta_path = self.paths(stage, key)
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
        payload = buffer.getvalue()
        meta = {**meta, "sha256": hashlib.sha256(payload).hexdigest(), "stage": stage, "key": key,
                "trainer_version": TRAINER_VERSION, "created": time.time()}
        atomic_write_bytes(weights, payload)
        atomic_write_json(meta_path, meta)  # written last: an entry without metadata is not an entry
        return meta

    def resume_path(self, stage: str, key_parts: dict) -> Path:
        """Where the training of an entry keeps its resumable state until the entry is stored."""
        return self.root / f"{stage}-{self.key(stage, key_parts)}.resume"

    @staticmethod
    def key(stage: str, key_parts: dict) -> str:
        """The entry key of a model: known before it is trained, so results derived from it can be keyed."""
        return stable_hash({"stage": stage, "trainer_version": TRAINER_VERSION, **key_parts})

    def get_or_train(self, stage: str, key_parts: dict, build: Callable[[], nn.Module],
                     train: Callable[[nn.Module], dict], keep: bool = True) -> tuple[nn.Module, dict, bool]:
        """Return (model, metadata, hit). Under a file lock, so concurrent cells train an entry once.

        `build` must return a freshly initialised model each call: a failed load may have touched the
        instance it loaded into, and training must start from the seeded initialisation. `keep=False`
        trains without storing the checkpoint (pool models whose logits are all that is kept); an entry
        already stored is still loaded.
        """
        key = self.key(stage, key_parts)
        model = build()
        meta = self.load(stage, key, model)
        if meta is not None:
            return model, meta, True
        with FileLock(str(self.root / f"{stage}-{key}.lock")):
            model = build()
            meta = self.load(stage, key, model)  # another process may have finished it meanwhile
            if meta is not None:
                return model, meta, True
            model = build()
            start = time.perf_counter()
            stats = train(model)
            device = next(model.parameters(), torch.empty(0)).device
            meta = {"key_parts": key_parts, "train_seconds": time.perf_counter() - start, "machine": machine(device),
                    **stats}
            if not keep:
                return model, {**meta, "stage": stage, "key": key, "kept": False}, False
            return model, self.save(stage, key, model, meta), False

    def computed_folder(self, stage: str, key_parts: dict) -> Path:
        """Where get_or_compute keeps an evaluation: its files, and `result.json` once it has finished."""
        return self.root / f"{stage}-{self.key(stage, key_parts)}"

    def get_or_compute(self, stage: str, key_parts: dict, compute: Callable[[Path], dict]) -> tuple[dict, Path, bool]:
        """Return (result, folder, hit) for a JSON-able evaluation of a cached model, e.g. the retrain model's
        metrics that every method of a cell shares. `compute(folder)` may leave files (sample grids) in
        `folder`; the result is written last and atomically, so a half-finished evaluation is recomputed."""
        key = self.key(stage, key_parts)
        folder = self.computed_folder(stage, key_parts)
        result_path = folder / "result.json"

        def read() -> dict | None:
            try:
                return json.loads(result_path.read_text())["result"]
            except FileNotFoundError:
                return None
            except (ValueError, KeyError, OSError) as err:
                log.warning("cache entry %s is corrupted (%s); recomputing it", result_path, err)
                return None

        if (result := read()) is not None:
            return result, folder, True
        with FileLock(str(self.root / f"{stage}-{key}.lock")):
            if (result := read()) is not None:
                return result, folder, True
            folder.mkdir(parents=True, exist_ok=True)
            result = compute(folder)
            atomic_write_json(result_path, {"result": result, "key_parts": key_parts, "created": time.time()})
            return result, folder, False
