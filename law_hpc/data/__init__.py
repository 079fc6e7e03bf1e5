"""Data layer: datasets, corruption protocols, search/validation splits, and the batch pipelines.

`build_data(cfg.data, purpose=..., seed=..., rank=..., world_size=..., device=...)` -> DataBundle.
See docs/interfaces.md for the contract (TrainStream.iterate, EvalSet.batches, Batch).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..seeding import derive_seed
from .arrays import ArrayDataset, load_fmnist
from .splits import make_split
from .torch_backend import ArrayEvalSet, ArrayTrainStream, Batch

__all__ = ["build_data", "DataBundle", "Batch"]


@dataclass
class DataBundle:
    train: object
    val: object
    test: object | None
    num_classes: int
    in_channels: int
    image_size: int
    train_label_counts: np.ndarray
    train_clean_mask: np.ndarray
    report: dict
    split: dict = field(default_factory=dict)

    def save_split(self, path) -> None:
        """Record the split (indices, true and observed labels) so a run is reproducible and auditable."""
        with h5py.File(path, "w") as file:
            for name, array in self.split.items():
                file.create_dataset(name, data=np.asarray(array))


def _load_arrays(cfg) -> tuple[ArrayDataset, ArrayDataset]:
    if cfg.dataset == "fmnist":
        return load_fmnist(cfg.root, "train"), load_fmnist(cfg.root, "test")
    raise ValueError(f"data.dataset '{cfg.dataset}' has no loader yet")


def build_data(cfg, *, purpose: str, seed: int, rank: int, world_size: int, device) -> DataBundle:
    """The data of a search (`purpose="search"`: one unsharded subset per searcher) or of a test-phase
    training (`purpose="train"`: the full corrupted training set, sharded by global rank, and the test set)."""
    if purpose not in ("search", "train"):
        raise ValueError(f"unknown data purpose '{purpose}'")
    if cfg.backend == "dali":
        from .dali import require_dali
        require_dali(cfg)
    train_set, test_set = _load_arrays(cfg)
    rng = np.random.default_rng(derive_seed(seed, "split"))
    split = make_split(train_set.labels, train_set.num_classes, cfg.val_size,
                       cfg.search_train_size if purpose == "search" else cfg.train_size, cfg.noise_mode, cfg.noise_rate,
                       cfg.imbalance, rng, cfg.imbalance_factor, tuple(cfg.discard_classes), cfg.discard_keep)
    shard = (0, 1) if purpose == "search" else (rank, world_size)
    train_images = train_set.images[split["train_index"]]
    train = ArrayTrainStream(train_images, split["train_observed"], cfg.batch_size, train_set.mean, train_set.std,
                             cfg.augment, device, shard)
    val = ArrayEvalSet(train_set.images[split["val_index"]], train_set.labels[split["val_index"]],
                       cfg.eval_batch_size, train_set.mean, train_set.std, device)
    test = None
    if purpose == "train":
        count = cfg.test_size or len(test_set.labels)
        test = ArrayEvalSet(test_set.images[:count], test_set.labels[:count], cfg.eval_batch_size, test_set.mean,
                            test_set.std, device)
    num_classes = train_set.num_classes
    return DataBundle(
        train=train, val=val, test=test, num_classes=num_classes, in_channels=train_set.images.shape[-1],
        image_size=train_set.images.shape[1],
        train_label_counts=np.bincount(split["train_observed"], minlength=num_classes).astype(np.int64),
        train_clean_mask=split["train_true"] == split["train_observed"], report=split.pop("report"),
        split={k: v for k, v in split.items()})
