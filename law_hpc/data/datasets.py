"""The dataset registry: a name (data.dataset) and the loader of its training and test sources.

A loader takes the `data` config section and returns (training source, test source or None): an
`ArrayDataset` held in memory (data/arrays.py) or a `FileDataset` of images on disk (data/folders.py).
Adding a dataset is one loader function under `@register_dataset("name")`.
"""
from __future__ import annotations

from typing import Callable

DATASETS: dict[str, Callable] = {}
"""Dataset name -> loader(data_cfg) -> (training source, test source or None)."""


def register_dataset(name: str):
    """Decorator: make `loader(data_cfg)` the dataset `name` of data.dataset."""
    def wrap(loader):
        if DATASETS.get(name, loader) is not loader:
            raise ValueError(f"two datasets are named '{name}'")
        DATASETS[name] = loader
        return loader
    return wrap


def load_datasets(cfg):
    """(training source, test source) of `cfg.dataset` (a name in DATASETS)."""
    if cfg.dataset not in DATASETS:
        raise ValueError(f"unknown dataset '{cfg.dataset}' (known: {', '.join(sorted(DATASETS))})")
    return DATASETS[cfg.dataset](cfg)
