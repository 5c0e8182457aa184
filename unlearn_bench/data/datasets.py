"""Dataset loaders. Every loader returns uint8 images (N, C, H, W) and int64 labels.

Sources: data shipped with scikit-learn (digits, the embedded default), checksummed `.npz` files in a
data root (MNIST, Fashion-MNIST, JPEG CIFAR-10), and torchvision's downloaders for users with internet.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from unlearn_bench.config import CONFIG_DIR
from unlearn_bench.errors import ConfigError, UserError
from unlearn_bench.registry import Registry

log = logging.getLogger(__name__)
DATASETS: Registry = Registry("dataset")


@dataclass
class ImageData:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> ImageData:
        return ImageData(self.images[index], self.labels[index])

    @staticmethod
    def concat(*parts: ImageData) -> ImageData:
        """The parts one after another, on the first part's device."""
        device = parts[0].labels.device
        return ImageData(torch.cat([p.images.to(device) for p in parts]),
                         torch.cat([p.labels.to(device) for p in parts]))

    def to(self, device: torch.device | str, pin_memory: bool = False) -> ImageData:
        """One copy to `device`, from pinned host memory where asked (CUDA)."""
        device = torch.device(device)
        if pin_memory and device.type == "cuda" and self.images.device.type == "cpu":
            return ImageData(self.images.pin_memory().to(device, non_blocking=True),
                             self.labels.pin_memory().to(device, non_blocking=True))
        return ImageData(self.images.to(device), self.labels.to(device))


@dataclass
class ImageDataset:
    name: str
    train: ImageData
    test: ImageData
    num_classes: int
    unused_test: ImageData | None = None  # test images a `test_size` subset leaves out (blind tuning's validation)


def _from_numpy(images: np.ndarray, labels: np.ndarray) -> ImageData:
    """(N, H, W) or (N, H, W, C) uint8 -> (N, C, H, W) tensors."""
    if images.dtype != np.uint8:
        raise ValueError(f"images of dtype {images.dtype}, expected uint8")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels of dtype {labels.dtype}, expected integers")
    if images.ndim == 3:
        images = images[:, :, :, None]
    if images.ndim != 4:
        raise ValueError(f"images of shape {images.shape}, expected (N, H, W) or (N, H, W, C)")
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    return ImageData(x.to(torch.uint8), torch.from_numpy(labels.astype(np.int64)))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def data_file(cfg: DictConfig, data_root: Path) -> Path | None:
    """The dataset's npz file, verified against the checksum in its config; None if it is absent."""
    path = data_root / cfg.file
    if not path.is_file():
        return None
    actual = sha256_file(path)
    if cfg.get("sha256") and actual != cfg.sha256:
        raise UserError(f"dataset.file {path} has sha256 {actual}, expected dataset.sha256={cfg.sha256}: "
                        "the file is corrupted or not the expected release; replace it")
    return path


def check_available(cfg: DictConfig, data_root: Path) -> None:
    """A dataset that can only be read from its npz has the file (the loader's rule; also run before any
    training for a second dataset of a cell, SCAR's surrogate, which is loaded only when the method runs)."""
    if not cfg.get("file"):  # digits: no file
        return
    npz_only = cfg.source == "npz" or (cfg.source == "auto" and not cfg.download)
    if npz_only and not (Path(data_root) / cfg.file).is_file():
        raise _missing(cfg, Path(data_root))


def _missing(cfg: DictConfig, data_root: Path) -> UserError:
    return UserError(f"dataset.file {data_root / cfg.file} not found for dataset={cfg.name}; set paths.data_root "
                     "(or UNLEARN_BENCH_DATA) to the folder holding it, or dataset.source=torchvision with "
                     "dataset.download=true where there is internet")


@DATASETS.register("digits")
def digits(cfg: DictConfig, data_root: Path, cache_dir: Path | None = None) -> ImageDataset:
    """scikit-learn's 8x8 digits: ships with the package, so the default run needs no download."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are 0..16: scale to the uint8 range every other dataset uses.
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    labels = bunch.target
    order = np.random.default_rng(cfg.split_seed).permutation(len(labels))
    n_test = int(round(cfg.test_fraction * len(labels)))
    test, train = order[:n_test], order[n_test:]
    return ImageDataset(cfg.name, _from_numpy(images[train], labels[train]),
                        _from_numpy(images[test], labels[test]), cfg.num_classes)


def _torchvision_split(cfg: DictConfig, data_root: Path, train: bool) -> ImageData:
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10,
           "cifar100": tvd.CIFAR100}[cfg.name]
    try:
        ds = cls(str(data_root), train=train, download=bool(cfg.download))
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise UserError(f"dataset={cfg.name}: torchvision could not load it from paths.data_root={data_root} "
                        f"({err}); set dataset.download=true where there is internet") from None
    data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
    return _from_numpy(data, np.asarray(ds.targets))


def _npz_or_torchvision(cfg: DictConfig, data_root: Path, read_npz) -> ImageDataset:
    if cfg.source not in ("auto", "npz", "torchvision"):
        raise ConfigError("dataset.source", cfg.source, ["auto", "npz", "torchvision"])
    path = data_file(cfg, data_root) if cfg.source in ("auto", "npz") and cfg.get("file") else None
    if path is not None:
        try:
            train, test = read_npz(path)
        except (KeyError, ValueError, OSError, EOFError) as err:  # missing arrays, not an npz, truncated
            raise UserError(f"dataset.file {path} cannot be read as the {cfg.name} npz ({type(err).__name__}: "
                            f"{err}); accepted: x_train, y_train, x_test, y_test arrays (or the JPEG layout)") from None
        for split, data in (("train", train), ("test", test)):
            check_arrays(cfg, path, split, data)
    else:
        check_available(cfg, data_root)
        train, test = _torchvision_split(cfg, data_root, True), _torchvision_split(cfg, data_root, False)
    return ImageDataset(cfg.name, train, test, cfg.num_classes)


def check_arrays(cfg: DictConfig, path: Path, split: str, data: ImageData) -> None:
    """A data file whose arrays do not fit the dataset's config is refused in one line, not met later as
    a shape error inside a model (the checksum may be disabled, or the file made by hand)."""
    images, labels = data.images, data.labels
    size, channels = cfg.image_size, cfg.channels
    problem = None
    if images.ndim != 4 or tuple(images.shape[1:]) != (channels, size, size):
        problem = f"x_{split} has shape {tuple(images.shape)}, expected (N, {size}, {size}) or (N, {size}, {size}, {channels})"
    elif labels.ndim != 1 or len(labels) != len(images):
        problem = f"y_{split} has shape {tuple(labels.shape)}, expected ({len(images)},) to match x_{split}"
    elif len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < cfg.num_classes):
        problem = (f"y_{split} holds labels in [{int(labels.min())}, {int(labels.max())}], expected "
                   f"[0, {cfg.num_classes - 1}] (dataset.num_classes={cfg.num_classes})")
    elif len(labels) == 0:
        problem = f"x_{split} is empty"
    if problem:
        raise UserError(f"dataset.file {path}: {problem}")


def _read_plain_npz(path: Path) -> tuple[ImageData, ImageData]:
    with np.load(path, allow_pickle=False) as npz:
        return _from_numpy(npz["x_train"], npz["y_train"]), _from_numpy(npz["x_test"], npz["y_test"])


def _decode_jpegs(blob: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    from PIL import Image

    raw = blob.tobytes()
    return np.stack([np.asarray(Image.open(io.BytesIO(raw[offsets[i]:offsets[i + 1]])).convert("RGB"))
                     for i in range(len(offsets) - 1)])


def _read_jpeg_npz(path: Path, cache_dir: Path | None) -> tuple[ImageData, ImageData]:
    """Decoding 60k JPEGs takes ~10 s, so the decoded arrays are cached beside the model cache."""
    from unlearn_bench.cache import atomic_write_bytes

    decoded = cache_dir / f"decoded-{sha256_file(path)[:16]}.npz" if cache_dir else None
    if decoded is not None and decoded.is_file():
        try:
            return _read_plain_npz(decoded)
        except Exception as err:  # a damaged decode cache is rebuilt, never trusted
            log.warning("decoded dataset cache %s unreadable (%s); decoding again", decoded, err)
    with np.load(path, allow_pickle=False) as npz:
        arrays = {"x_train": _decode_jpegs(npz["train_jpeg"], npz["train_offsets"]), "y_train": npz["y_train"],
                  "x_test": _decode_jpegs(npz["test_jpeg"], npz["test_offsets"]), "y_test": npz["y_test"]}
    if decoded is not None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(decoded, buffer.getvalue())
    return _from_numpy(arrays["x_train"], arrays["y_train"]), _from_numpy(arrays["x_test"], arrays["y_test"])


@DATASETS.register("mnist")
def mnist(cfg: DictConfig, data_root: Path, cache_dir: Path | None = None) -> ImageDataset:
    return _npz_or_torchvision(cfg, data_root, _read_plain_npz)


@DATASETS.register("fashion_mnist")
def fashion_mnist(cfg: DictConfig, data_root: Path, cache_dir: Path | None = None) -> ImageDataset:
    return _npz_or_torchvision(cfg, data_root, _read_plain_npz)


@DATASETS.register("cifar10")
def cifar10(cfg: DictConfig, data_root: Path, cache_dir: Path | None = None) -> ImageDataset:
    return _npz_or_torchvision(cfg, data_root, lambda p: _read_jpeg_npz(p, cache_dir))


@DATASETS.register("cifar100")
def cifar100(cfg: DictConfig, data_root: Path, cache_dir: Path | None = None) -> ImageDataset:
    return _npz_or_torchvision(cfg, data_root, _read_plain_npz)


def _take(data: ImageData, size: int | None, seed: int, key: str) -> tuple[ImageData, ImageData]:
    """A fixed, seeded subset (the same for every run seed) so that CPU-scale runs share their models, and
    the images it leaves out."""
    if size is None or size >= len(data):
        return data, data.subset(torch.zeros(0, dtype=torch.long))
    if size <= 0:
        raise ConfigError(key, size, f"an integer in [1, {len(data)}] or null for all")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=generator)
    return data.subset(order[:size].sort().values), data.subset(order[size:].sort().values)


def dataset_config(name: str) -> DictConfig:
    """conf/dataset/<name>.yaml as the dataset group composes it (a second dataset of a cell: SCAR's surrogate)."""
    path = CONFIG_DIR / "dataset" / f"{name}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError("dataset", name, options)
    own = OmegaConf.load(path)
    bases = [entry for entry in own.pop("defaults", []) if entry != "_self_"]  # the group's own defaults list
    return OmegaConf.merge(*(dataset_config(base) for base in bases), own)


def load_dataset(cfg: DictConfig, data_root: Path, cache_dir: Path | None = None) -> ImageDataset:
    loader = DATASETS.get(cfg.name)
    dataset = loader(cfg, data_root, cache_dir)
    subset_seed = cfg.get("subset_seed", 0)
    dataset.train, _ = _take(dataset.train, cfg.get("train_size"), subset_seed, "dataset.train_size")
    dataset.test, dataset.unused_test = _take(dataset.test, cfg.get("test_size"), subset_seed + 1, "dataset.test_size")
    channels = dataset.train.images.shape[1]
    if channels != cfg.channels:
        raise ConfigError("dataset.channels", cfg.channels, f"{channels} (what the {cfg.name} files hold)")
    return dataset
