"""Corruption protocols of the training labels (law_spec.md): symmetric/pair noise and imbalance.

Applied to the training part only; validation and test labels stay clean. Every function is a pure
function of its inputs and a numpy Generator, so a split is reproducible from the seed.
"""
from __future__ import annotations

import numpy as np

NOISE_MODES = ("none", "uniform_mix", "flip", "pair")
"""data.noise_mode (corrupt_labels)."""
IMBALANCES = ("none", "discard", "long_tail")
"""data.imbalance (imbalance_keep)."""


def corrupt_labels(labels: np.ndarray, num_classes: int, mode: str, rate: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Noisy copy of `labels`.

    uniform_mix: with probability p the label becomes a uniform random class, the true one included
      (paper / MW-Net; the real flip rate is p (C-1)/C);
    flip: with probability p the label moves to a uniform random OTHER class (Co-teaching);
    pair: with probability p the label moves to (y + 1) mod C (asymmetric).
    """
    labels = np.asarray(labels, dtype=np.int64)
    if mode == "none" or rate == 0.0:
        return labels.copy()
    hit = rng.random(len(labels)) < rate
    noisy = labels.copy()
    if mode == "uniform_mix":
        noisy[hit] = rng.integers(0, num_classes, hit.sum())
    elif mode == "flip":
        # an offset in 1..C-1 never lands on the true class
        noisy[hit] = (labels[hit] + rng.integers(1, num_classes, hit.sum())) % num_classes
    elif mode == "pair":
        noisy[hit] = (labels[hit] + 1) % num_classes
    else:
        raise ValueError(f"unknown noise mode '{mode}'")
    return noisy


def imbalance_keep(labels: np.ndarray, num_classes: int, mode: str, rng: np.random.Generator,
                   factor: float = 100.0, classes=(0, 1), keep: float = 0.04) -> np.ndarray:
    """Indices (sorted) of the samples kept by an imbalance protocol, chosen on the TRUE labels.

    discard: keep a fraction `keep` of the samples of `classes` (paper Table 4: 4 % of classes 0, 1);
    long_tail: n_i = n_max * factor^(-i / (C - 1)) samples of class i (Cui et al.; Table 5, IF = 100).
    """
    labels = np.asarray(labels)
    if mode == "none":
        return np.arange(len(labels))
    kept = []
    n_max = np.bincount(labels, minlength=num_classes).max()
    for cls in range(num_classes):
        members = np.flatnonzero(labels == cls)
        if mode == "discard":
            count = int(round(len(members) * keep)) if cls in classes else len(members)
        elif mode == "long_tail":
            count = int(n_max * factor ** (-cls / max(num_classes - 1, 1)))
        else:
            raise ValueError(f"unknown imbalance mode '{mode}'")
        kept.append(rng.choice(members, size=min(max(count, 1), len(members)), replace=False))
    return np.sort(np.concatenate(kept))


def corruption_report(true_labels: np.ndarray, observed_labels: np.ndarray, num_classes: int) -> dict:
    """What the corruption did: realised noise rate and per-class counts, for metrics.h5 /data_report."""
    return {
        "realised_noise_rate": float(np.mean(true_labels != observed_labels)) if len(true_labels) else 0.0,
        "true_class_counts": np.bincount(true_labels, minlength=num_classes).astype(np.int64),
        "observed_class_counts": np.bincount(observed_labels, minlength=num_classes).astype(np.int64),
    }
