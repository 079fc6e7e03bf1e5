"""Data layer: datasets, corruption protocols, search/validation splits, and the batch pipelines.

`build_data(cfg.data, purpose=..., seed=..., rank=..., world_size=..., device=...)` -> DataBundle.
Backends as in NVIDIA's DeepLearningExamples: `dali` (GPU when CUDA is present, else CPU) or `torch`.
The engine sees only the protocols of data/types.py (TrainStream, EvalSet, Batch); docs/interfaces.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import h5py
import numpy as np

from ..seeding import derive_seed
from .arrays import ArrayDataset, load_cifar, load_fmnist
from .folders import Screening, scan_image_folder, screen_images
from .splits import make_split
from .torch_backend import ArrayEvalSet, ArrayTrainStream
from .types import Batch, EvalSet, TrainStream

__all__ = ["build_data", "load_datasets", "DataBundle", "Batch", "EvalSet", "Screening", "TrainStream"]


@dataclass
class DataBundle:
    train: TrainStream
    """Corrupted training batches (the search subset, or the test phase's shard)."""
    val: EvalSet
    """The clean, class-balanced validation split (rewards, model selection)."""
    test: EvalSet | None
    """The test phase: this rank's shard of the test set (evaluation is sharded and the counts summed)."""
    num_classes: int
    in_channels: int
    image_size: int
    train_label_counts: np.ndarray
    """int64 [C]: counts of the observed (possibly noisy) training labels."""
    train_clean_mask: np.ndarray
    """bool [N_train]: observed label == true label."""
    report: dict
    """Realised noise rate and per-class counts before/after corruption."""
    split: dict = field(default_factory=dict)
    """Index arrays of the split (saved in the run directory)."""
    val_shard: EvalSet | None = None
    """This rank's shard of the validation split (the test phase's sharded evaluation); `val` on one rank."""

    def save_split(self, path) -> None:
        """Record the split (indices, true and observed labels) so a run is reproducible and auditable."""
        with h5py.File(path, "w") as file:
            for name, array in self.split.items():
                file.create_dataset(name, data=np.asarray(array))


def load_datasets(cfg):
    """(training source, test source) of `cfg.dataset`: ArrayDatasets in memory or FileDatasets on disk."""
    if cfg.dataset == "fmnist":
        return load_fmnist(cfg.root, "train"), load_fmnist(cfg.root, "test")
    if cfg.dataset in ("cifar10", "cifar100"):
        return load_cifar(cfg.root, "train", cfg.dataset), load_cifar(cfg.root, "test", cfg.dataset)
    train = scan_image_folder(cfg.root, "train")
    return train, scan_image_folder(cfg.root, "val", train.classes)


def _subset(count: int, total: int) -> np.ndarray:
    """`count` evenly spaced indices of `total` (all when count is 0): every class stays represented."""
    return np.arange(total) if not count or count >= total else np.linspace(0, total - 1, count).astype(np.int64)


def _pipelines(cfg, source, test_source, split, shard, device, dali_device, screening):
    """(train stream, validation set, this rank's shard of the validation set, this rank's shard of the test set
    or None) for the configured backend."""
    train_index, val_index, observed = split["train_index"], split["val_index"], split["train_observed"]
    test_index = None if test_source is None else _subset(cfg.test_size, len(test_source.labels))
    part = lambda index: np.array_split(index, shard[1])[shard[0]]  # contiguous, together the whole set
    if isinstance(source, ArrayDataset):
        images, mean, std = source.images, source.mean, source.std
        if dali_device:
            from .dali import DaliArrayTrainStream
            train = DaliArrayTrainStream(images[train_index], observed, batch_size=cfg.batch_size, mean=mean, std=std,
                                         augment=cfg.augment, device=device, shard=shard, dali_device=dali_device,
                                         num_threads=cfg.num_workers)
        else:
            train = ArrayTrainStream(images[train_index], observed, batch_size=cfg.batch_size, mean=mean, std=std,
                                     augment=cfg.augment, device=device, shard=shard)
        evaluation = lambda data, index: ArrayEvalSet(data.images[index], data.labels[index],
                                                      batch_size=cfg.eval_batch_size, mean=mean, std=std, device=device)
    else:
        common = dict(mean=source.mean, std=source.std, image_size=cfg.image_size, device=device)
        if dali_device:
            from .dali import DaliFileEvalSet, DaliFileTrainStream
            # every file the run reads, screened once (the same list on every rank, split among them)
            every = np.concatenate([source.paths[train_index], source.paths[val_index]]
                                   + ([] if test_source is None else [test_source.paths[test_index]]))
            bad = set(every[screen_images(every, screening)].tolist())
            damaged = lambda paths: np.array([i for i, path in enumerate(paths.tolist()) if path in bad], np.int64)
            train = DaliFileTrainStream(source.paths[train_index], observed, batch_size=cfg.batch_size, shard=shard,
                                        dali_device=dali_device, num_threads=cfg.num_workers,
                                        on_corrupt=cfg.on_corrupt_image, damaged=damaged(source.paths[train_index]),
                                        **common)
            evaluation = lambda data, index: DaliFileEvalSet(data.paths[index], data.labels[index],
                                                             batch_size=cfg.eval_batch_size,
                                                             dali_device=dali_device, num_threads=cfg.num_workers,
                                                             on_corrupt=cfg.on_corrupt_image,
                                                             damaged=damaged(data.paths[index]), **common)
        else:
            from .torch_files import FileEvalSet, FileTrainStream
            train = FileTrainStream(source.paths[train_index], observed, batch_size=cfg.batch_size, shard=shard,
                                    num_workers=cfg.num_workers, on_corrupt=cfg.on_corrupt_image, **common)
            evaluation = lambda data, index: FileEvalSet(data.paths[index], data.labels[index],
                                                         batch_size=cfg.eval_batch_size,
                                                         num_workers=cfg.num_workers, on_corrupt=cfg.on_corrupt_image,
                                                         **common)
    test = None if test_source is None else evaluation(test_source, part(test_index))
    val = evaluation(source, val_index)
    return train, val, val if shard[1] == 1 else evaluation(source, part(val_index)), test


def build_data(cfg, *, purpose: str, seed: int, rank: int, world_size: int, device,
               screening: Screening | None = None) -> DataBundle:
    """The data of a search (`purpose="search"`: one unsharded subset per searcher) or of a test-phase
    training (`purpose="train"`: the corrupted training set, sharded by global rank, and the test set).
    `screening`: how image folders read by DALI are screened for damage, once per run (default: alone,
    uncached)."""
    if purpose not in ("search", "train"):
        raise ValueError(f"unknown data purpose '{purpose}'")
    dali_device = None
    if cfg.backend == "dali":
        from .dali import require_dali
        dali_device = require_dali(cfg)
    source, test_source = load_datasets(cfg)
    rng = np.random.default_rng(derive_seed(seed, "split"))
    search = purpose == "search"
    split = make_split(source.labels, source.num_classes, val_size=cfg.val_size,
                       train_size=cfg.search_train_size if search else cfg.train_size, noise_mode=cfg.noise_mode,
                       noise_rate=cfg.noise_rate, imbalance=cfg.imbalance, rng=rng,
                       imbalance_factor=cfg.imbalance_factor, discard_classes=tuple(cfg.discard_classes),
                       discard_keep=cfg.discard_keep, per_class=cfg.per_class_images if search else 0)
    shard = (0, 1) if search else (rank, world_size)
    train, val, val_shard, test = _pipelines(cfg, source, None if search else test_source, split, shard, device,
                                             dali_device, screening)
    in_memory = isinstance(source, ArrayDataset)
    num_classes = source.num_classes
    report = split.pop("report")
    return DataBundle(
        train=train, val=val, test=test, num_classes=num_classes,
        in_channels=source.images.shape[-1] if in_memory else 3,
        image_size=source.images.shape[1] if in_memory else cfg.image_size,
        train_label_counts=np.bincount(split["train_observed"], minlength=num_classes).astype(np.int64),
        train_clean_mask=split["train_true"] == split["train_observed"], report=report, split=split,
        val_shard=val_shard)
