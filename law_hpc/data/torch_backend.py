"""The torch backend for in-memory arrays: whole-batch augmentation with torch ops on the device.

Order and augmentation of every batch are pure functions of (stream_seed, step): a resumed run
gets the same batches, and skipping ahead costs nothing.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ..seeding import derive_seed
from .arrays import ArrayDataset
from .order import EpochOrder
from .types import Batch, Subset


def _normaliser(mean, std, device):
    mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255.0
    std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255.0
    return lambda nchw_uint8: (nchw_uint8.float() - mean) / std


def crop_flip_params(batch: int, generator: torch.Generator, pad: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample crop offsets [2, B] (row, column; 0..2*pad in the padded image) and flips [B] (bool).

    Drawn on the CPU from `generator` so the torch and DALI backends augment a batch identically."""
    offsets = torch.randint(0, 2 * pad + 1, (2, batch), generator=generator)
    flips = torch.rand(batch, generator=generator) < 0.5
    return offsets, flips


def crop_flip(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Pad-`pad` random crop + random horizontal flip of a uint8 NCHW batch, all samples at once."""
    batch, _, height, width = images.shape
    offsets, flips = crop_flip_params(batch, generator, pad)
    offsets, flips = offsets.to(images.device), flips.to(images.device)
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    rows = (offsets[0, :, None] + torch.arange(height, device=images.device)).view(batch, 1, height, 1)
    cols = (offsets[1, :, None] + torch.arange(width, device=images.device)).view(batch, 1, 1, width)
    cropped = padded[torch.arange(batch, device=images.device).view(batch, 1, 1, 1),
                     torch.arange(images.shape[1], device=images.device).view(1, -1, 1, 1), rows, cols]
    return torch.where(flips.view(batch, 1, 1, 1), cropped.flip(-1), cropped)


class ArrayTrainStream:
    """Endless shuffled, augmented batches of an in-memory training split (optionally sharded by rank)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, batch_size: int, mean, std, augment: str,
                 device, shard: tuple[int, int] = (0, 1)):
        self.images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)
        self.labels = torch.from_numpy(labels).to(device)
        self.batch_size, self.augment, self.device = batch_size, augment, device
        self.order = EpochOrder(len(labels), batch_size, shard)
        self.batches_per_epoch = self.order.batches_per_epoch
        self.normalise = _normaliser(mean, std, device)

    skipped_images = 0  # in-memory arrays have nothing to skip

    def iterate(self, stream_seed: int, start_step: int = 0) -> Iterator[Batch]:
        step, order, order_epoch = start_step, None, -1
        while True:
            epoch, position = divmod(step, self.batches_per_epoch)
            if epoch != order_epoch:
                order, order_epoch = torch.from_numpy(self.order.epoch_order(stream_seed, epoch)).to(self.device), epoch
            index = order[position * self.batch_size:(position + 1) * self.batch_size]
            images = self.images[index]
            if self.augment == "crop_flip":
                generator = torch.Generator().manual_seed(derive_seed(stream_seed, "augment", step))
                images = crop_flip(images, generator)
            yield Batch(self.normalise(images), self.labels[index], index)
            step += 1


class ArrayEvalSet:
    """Clean, unaugmented evaluation batches of an in-memory split."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, batch_size: int, mean, std, device):
        self.images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)
        self.labels = torch.from_numpy(labels).to(device)
        self.batch_size = batch_size
        self.normalise = _normaliser(mean, std, device)

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self):
        for start in range(0, len(self.labels), self.batch_size):
            yield self.normalise(self.images[start:start + self.batch_size]), self.labels[start:start + self.batch_size]


def build_pipelines(cfg, train: Subset, evaluations: dict[str, Subset], shard: tuple[int, int], device,
                    screening=None) -> tuple:
    """The torch backend: (training stream of `train`, {name: EvalSet} of `evaluations}`); in-memory arrays
    through batched torch ops, image folders through PIL and torchvision in a DataLoader."""
    source = train.source
    if isinstance(source, ArrayDataset):
        stream = ArrayTrainStream(source.images[train.index], train.labels, batch_size=cfg.batch_size,
                                  mean=source.mean, std=source.std, augment=cfg.augment, device=device, shard=shard)
    else:
        from .folders import damaged_paths
        from .torch_files import FileTrainStream
        if cfg.on_corrupt_image == "fail":  # found before training starts, once per run (screened.h5), as DALI does
            bad = sorted(damaged_paths([train, *evaluations.values()], screening))
            if bad:
                more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
                raise ValueError(f"cannot decode image {bad[0]}{more} (damaged; data.on_corrupt_image=skip to skip it)")
        stream = FileTrainStream(source.paths[train.index], train.labels, batch_size=cfg.batch_size, shard=shard,
                                 augment=cfg.augment, **_file_options(cfg, source, device))
    return stream, eval_sets(cfg, source, evaluations, device)


def eval_sets(cfg, source, evaluations: dict[str, Subset], device, screening=None) -> dict:
    """{name: EvalSet} of `evaluations`, unaugmented, normalised with the training `source`'s statistics (either
    backend's in-memory sets). `screening` is DALI's concern: PIL names an unreadable file itself."""
    if isinstance(source, ArrayDataset):
        return array_eval_sets(cfg, source, evaluations, device)
    from .torch_files import FileEvalSet
    return {name: FileEvalSet(subset.source.paths[subset.index], subset.labels, batch_size=cfg.eval_batch_size,
                              **_file_options(cfg, source, device))
            for name, subset in evaluations.items()}


def _file_options(cfg, source, device) -> dict:
    return dict(mean=source.mean, std=source.std, image_size=cfg.image_size, device=device,
                num_workers=cfg.num_workers, on_corrupt=cfg.on_corrupt_image)


def array_eval_sets(cfg, source, evaluations: dict[str, Subset], device) -> dict[str, ArrayEvalSet]:
    """In-memory evaluation sets (either backend), normalised with the training source's statistics."""
    return {name: ArrayEvalSet(subset.source.images[subset.index], subset.labels, batch_size=cfg.eval_batch_size,
                               mean=source.mean, std=source.std, device=device)
            for name, subset in evaluations.items()}
