"""Datasets as uint8 tensors in memory, and the forget / retain / test splits of the protocol."""

from unlearn_bench.data.datasets import DATASETS, ImageData, ImageDataset, dataset_config, load_dataset
from unlearn_bench.data.splits import Splits, make_splits, select_forget

__all__ = ["DATASETS", "ImageData", "ImageDataset", "Splits", "dataset_config", "load_dataset", "make_splits", "select_forget"]
