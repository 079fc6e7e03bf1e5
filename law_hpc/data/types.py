"""What every data backend hands the engine: a `Batch`, a `TrainStream` and an `EvalSet`.

Backends (torch arrays, torch image folders, DALI arrays, DALI folders) implement these protocols;
the search and the test phase see nothing else of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

import torch


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
