"""Search/validation/training splits, deterministic by seed, with the corruption applied to training only."""
from __future__ import annotations

import numpy as np

from .corruption import corrupt_labels, corruption_report, imbalance_keep


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


def make_split(labels: np.ndarray, num_classes: int, *, val_size: int, train_size: int, noise_mode: str,
               noise_rate: float, imbalance: str, rng: np.random.Generator, imbalance_factor: float = 100.0,
               discard_classes=(0, 1), discard_keep: float = 0.04, per_class: int = 0) -> dict:
    """{'train_index', 'val_index', 'train_true', 'train_observed', 'report'}.

    The clean validation split is taken first; imbalance then thins the rest on true labels; a
    `train_size` subset (0 = all), or `per_class` images of every class, is drawn; label noise is
    applied to it last.
    """
    val_index = balanced_validation(labels, num_classes, val_size, rng)
    pool = np.setdiff1d(np.arange(len(labels)), val_index)
    pool = pool[imbalance_keep(labels[pool], num_classes, imbalance, rng, imbalance_factor, discard_classes,
                               discard_keep)]
    pool = rng.permutation(pool)
    if per_class:
        pool = rng.permutation(pool[balanced_validation(labels[pool], num_classes, per_class * num_classes, rng)])
    elif train_size:
        if train_size > len(pool):
            raise ValueError(f"data.search_train_size={train_size} but only {len(pool)} training images remain")
        pool = pool[:train_size]
    train_true = labels[pool]
    train_observed = corrupt_labels(train_true, num_classes, noise_mode, noise_rate, rng)
    return {"train_index": pool, "val_index": val_index, "train_true": train_true,
            "train_observed": train_observed,
            "report": corruption_report(train_true, train_observed, num_classes)}
