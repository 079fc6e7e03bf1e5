"""Search/validation/training splits, deterministic by seed, with the corruption applied to training only."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .corruption import corrupt_labels, corruption_report, imbalance_keep


@dataclass(frozen=True)
class CorruptionSpec:
    """What a config asks to be done to the training labels and class counts (synthetic noise and imbalance,
    to reproduce the paper's settings); the default changes nothing."""

    noise_mode: str = "none"
    noise_rate: float = 0.0
    imbalance: str = "none"
    imbalance_factor: float = 100.0
    discard_classes: tuple[int, ...] = (0, 1)
    discard_keep: float = 0.04

    @classmethod
    def from_config(cls, data_cfg) -> "CorruptionSpec":
        """The corruption of a `data` config section."""
        return cls(data_cfg.noise_mode, data_cfg.noise_rate, data_cfg.imbalance, data_cfg.imbalance_factor,
                   tuple(data_cfg.discard_classes), data_cfg.discard_keep)

    def describe(self) -> str:
        """What is done to the training labels, in words (a job prints it at its start)."""
        changes = []
        if self.noise_mode != "none" and self.noise_rate > 0:
            changes.append(f"adds {100 * self.noise_rate:g} % {self.noise_mode} noise to the training labels "
                           "(data.noise_mode, data.noise_rate)")
        if self.imbalance != "none":
            changes.append(f"makes the classes imbalanced ({self.imbalance}; data.imbalance)")
        return "; ".join(changes) or "training labels used as given (no synthetic noise or imbalance)"


@dataclass
class Split:
    """Which images train and which validate, with the training labels before and after the corruption."""

    train_index: np.ndarray
    """Positions of the training images in the source."""
    val_index: np.ndarray
    """Positions of the clean, class-balanced validation images in the source."""
    train_true: np.ndarray
    """The source's labels of the training images."""
    train_observed: np.ndarray
    """The labels training sees: train_true after the corruption."""
    report: dict
    """What the corruption did (corruption_report): realised noise rate, class counts before and after."""

    def arrays(self) -> dict[str, np.ndarray]:
        """The index and label arrays (what a run directory's split.h5 records)."""
        return {"train_index": self.train_index, "val_index": self.val_index, "train_true": self.train_true,
                "train_observed": self.train_observed}


def balanced_validation(labels: np.ndarray, num_classes: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """`size` indices, as equal per class as the data allow, sorted."""
    per_class = size // num_classes
    chosen = []
    for cls in range(num_classes):
        members = np.flatnonzero(labels == cls)
        if len(members) < per_class:
            raise ValueError(f"class {cls} has {len(members)} images, fewer than the {per_class} per class "
                             f"a validation split of {size} needs")
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def make_split(labels: np.ndarray, num_classes: int, *, val_size: int, train_size: int, corruption: CorruptionSpec,
               rng: np.random.Generator, per_class: int = 0) -> Split:
    """The clean validation split is taken first; imbalance then thins the rest on true labels; a
    `train_size` subset (0 = all), or `per_class` images of every class, is drawn; label noise is
    applied to it last."""
    c = corruption
    val_index = balanced_validation(labels, num_classes, val_size, rng)
    pool = np.setdiff1d(np.arange(len(labels)), val_index)
    pool = pool[imbalance_keep(labels[pool], num_classes, c.imbalance, rng, c.imbalance_factor, c.discard_classes,
                               c.discard_keep)]
    pool = rng.permutation(pool)
    if per_class:
        pool = rng.permutation(pool[balanced_validation(labels[pool], num_classes, per_class * num_classes, rng)])
    elif train_size:
        if train_size > len(pool):
            raise ValueError(f"{train_size} training images asked for (data.search_train_size of a search, "
                             f"data.train_size of a training; 0 = all) but only {len(pool)} remain")
        pool = pool[:train_size]
    train_true = labels[pool]
    train_observed = corrupt_labels(train_true, num_classes, c.noise_mode, c.noise_rate, rng)
    return Split(pool, val_index, train_true, train_observed, corruption_report(train_true, train_observed, num_classes))
