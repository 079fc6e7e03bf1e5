"""What a data backend is given (`Subset`s) and what it hands the engine: a `Batch`, a `TrainStream` and an `EvalSet`.

Backends (data/torch_backend.py, data/dali.py; each for in-memory arrays and image folders) implement these
protocols; the search and the test phase see nothing else of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

import numpy as np
import torch


@dataclass
class Subset:
    """The images of a source (an in-memory ArrayDataset or an on-disk FileDataset) at `index`, with `labels`."""

    source: object
    index: np.ndarray
    labels: np.ndarray
    """int64, one per index: the observed labels of a training split, the source's own labels of an evaluation set."""

    @classmethod
    def of(cls, source, index: np.ndarray) -> "Subset":
        """The images at `index` with the source's own labels (an evaluation set)."""
        return cls(source, index, source.labels[index])

    def part(self, shard: tuple[int, int]) -> "Subset":
        """Rank shard[0]'s contiguous part of shard[1]: together the whole subset."""
        index, labels = (np.array_split(array, shard[1])[shard[0]] for array in (self.index, self.labels))
        return Subset(self.source, index, labels)


@dataclass
class Batch:
    images: torch.Tensor
    """float NCHW, normalised, on the device."""
    labels: torch.Tensor
    """int64 observed (possibly noisy) labels."""
    index: torch.Tensor
    """int64 positions in the training split."""


class TrainStream(Protocol):
    """Endless training batches; order and augmentation are a pure function of (stream_seed, step)."""

    batches_per_epoch: int
    """Full batches per epoch; identical on every rank."""

    def iterate(self, stream_seed: int, start_step: int = 0) -> Iterator[Batch]:
        """Batches from `start_step` on, across epochs (a resumed run continues exactly)."""
        ...

    @property
    def skipped_images(self) -> int:
        """Unreadable images skipped so far (data.on_corrupt_image=skip); 0 for in-memory data."""
        ...


class EvalSet(Protocol):
    """Clean, unaugmented evaluation batches in a fixed order."""

    def __len__(self) -> int:
        ...

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images, labels) batches covering the set once."""
        ...
