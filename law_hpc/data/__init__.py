"""Data layer: datasets, corruption protocols, search/validation splits, and the batch pipelines.

`build_data(cfg.data, purpose=..., seed=..., rank=..., world_size=..., device=...)` -> DataBundle.
Backends as in NVIDIA's DeepLearningExamples: `dali` (GPU when CUDA is present, else CPU) or `torch`.
The engine sees only the protocols of data/types.py (TrainStream, EvalSet, Batch); docs/interfaces.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import h5py
import numpy as np

from ..seeding import derive_seed
from . import dali, torch_backend
from .arrays import ArrayDataset
from .datasets import DATASETS, load_datasets, register_dataset
from .decoded import decoded_sources
from .folders import Screening, trusted_folder
from .splits import CorruptionSpec, Split, make_split
from .types import Batch, EvalSet, Subset, TrainStream

__all__ = ["build_data", "load_datasets", "register_dataset", "BACKENDS", "DATASETS", "DataBundle", "Batch",
           "EvalSet", "Screening", "Split", "Subset", "TrainStream"]


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
    split: Split | None = None
    """Which images train and which validate, labels before and after corruption (saved in the run directory)."""
    val_shard: EvalSet | None = None
    """This rank's shard of the validation split (the test phase's sharded evaluation); `val` on one rank."""
    classes: list[str] | None = None
    """Class names in label order (an image folder's class folders; None for in-memory datasets)."""
    mean: tuple[float, ...] = ()
    """Per-channel mean and std the images are normalised with (model files record them)."""
    std: tuple[float, ...] = ()
    training_set: Callable[[], EvalSet] | None = None
    """A new EvalSet of the whole training split with its observed labels, unaugmented, in split order (position i
    is Batch.index i): for methods that score every training sample (DivideMix). Every rank gets the whole split."""

    def save_split(self, path) -> None:
        """Record the split (indices, true and observed labels) so a run is reproducible and auditable."""
        with h5py.File(path, "w") as file:
            for name, array in self.split.arrays().items():
                file.create_dataset(name, data=np.asarray(array))


def _subset(count: int, total: int) -> np.ndarray:
    """`count` evenly spaced indices of `total` (all when count is 0): every class stays represented."""
    return np.arange(total) if not count or count >= total else np.linspace(0, total - 1, count).astype(np.int64)


AUGMENTS_IN_MEMORY = ("none", "crop_flip")
"""data.augment of in-memory arrays: none, or a pad-4 random crop and a horizontal flip."""
AUGMENTS_FOLDERS = ("none", "flip", "random_resized_crop", "crop_flip")
"""data.augment of image folders (data/torch_files.train_transform; crop_flip = random_resized_crop)."""

BACKENDS = {"torch": torch_backend, "dali": dali}
"""data.backend -> its module, one builder per backend, each for in-memory arrays and image folders:
`build_pipelines(cfg, train, evaluations, shard, device, screening) -> (TrainStream, {name: EvalSet})` and
`eval_sets(cfg, source, evaluations, device, screening) -> {name: EvalSet}`."""


def build_data(cfg, *, purpose: str, seed: int, rank: int, world_size: int, device,
               screening: Screening | None = None) -> DataBundle:
    """The data of a search (`purpose="search"`: one unsharded subset per searcher) or of a test-phase
    training (`purpose="train"`: the corrupted training set, sharded by global rank, and the test set).
    `screening`: how image folders read by DALI are screened for damage, once per run (default: alone,
    uncached)."""
    if purpose not in ("search", "train"):
        raise ValueError(f"unknown data purpose '{purpose}'")
    source, test_source = load_datasets(cfg)
    trusted = trusted_folder(cfg.val_root, source.classes) if cfg.val_root else None
    source, test_source, trusted = decoded_sources(cfg, [source, test_source, trusted],
                                                   announce=print if rank == 0 else lambda line: None)
    rng = np.random.default_rng(derive_seed(seed, "split"))
    search = purpose == "search"
    split = make_split(source.labels, source.num_classes, val_size=0 if trusted else cfg.val_size,
                       train_size=cfg.search_train_size if search else cfg.train_size,
                       corruption=CorruptionSpec.from_config(cfg), rng=rng,
                       per_class=cfg.per_class_images if search else 0)
    shard = (0, 1) if search else (rank, world_size)
    evaluations = {"val": Subset.of(trusted, np.arange(len(trusted.labels))) if trusted
                   else Subset.of(source, split.val_index)}
    if shard[1] > 1:
        evaluations["val_shard"] = evaluations["val"].part(shard)
    if not search and test_source is not None:
        evaluations["test"] = Subset.of(test_source, _subset(cfg.test_size, len(test_source.labels))).part(shard)
    backend, training = BACKENDS[cfg.backend], Subset(source, split.train_index, split.train_observed)
    train, eval_sets = backend.build_pipelines(cfg, training, evaluations, shard, device, screening)
    in_memory = isinstance(source, ArrayDataset)
    num_classes = source.num_classes
    return DataBundle(
        train=train, val=eval_sets["val"], test=eval_sets.get("test"), num_classes=num_classes,
        in_channels=source.images.shape[-1] if in_memory else 3,
        image_size=source.images.shape[1] if in_memory else cfg.image_size,
        train_label_counts=np.bincount(split.train_observed, minlength=num_classes).astype(np.int64),
        train_clean_mask=split.train_true == split.train_observed, report=split.report, split=split,
        val_shard=eval_sets.get("val_shard", eval_sets["val"]), classes=getattr(source, "classes", None),
        mean=tuple(source.mean), std=tuple(source.std),
        training_set=lambda: backend.eval_sets(cfg, source, {"train": training}, device, screening)["train"])
