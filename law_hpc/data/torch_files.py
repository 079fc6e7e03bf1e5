"""The torch backend for image folders: PIL decoding and torchvision transforms in a DataLoader.

Augmentation of a sample is seeded by (stream_seed, epoch, position), so batches are a pure function
of (stream_seed, step) whatever the number of workers, and a resumed run gets the same batches.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..seeding import derive_seed
from .folders import CorruptImageLog, decode_rgb
from .order import EpochOrder
from .types import Batch


def train_transform(image_size: int, mean, std):
    from torchvision import transforms as T
    return T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])


def eval_transform(image_size: int, mean, std):
    from torchvision import transforms as T
    return T.Compose([T.Resize(round(image_size * 256 / 224)), T.CenterCrop(image_size), T.ToTensor(),
                      T.Normalize(mean, std)])


class _Samples(Dataset):
    """(image tensor, position) per position; an unreadable image raises, or under 'skip' yields None."""

    def __init__(self, paths, transform, on_corrupt: str, seed_parts=None):
        self.paths, self.transform, self.on_corrupt, self.seed_parts = paths, transform, on_corrupt, seed_parts

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, position):
        try:
            image = decode_rgb(self.paths[position])
        except ValueError:
            if self.on_corrupt == "skip":
                return None, position
            raise
        if self.seed_parts is None:
            return self.transform(image), position
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(*self.seed_parts, position))
            return self.transform(image), position


def _collate(samples):
    """Stack the readable samples; report the positions of skipped (corrupt) ones."""
    good = [(image, position) for image, position in samples if image is not None]
    skipped = [position for image, position in samples if image is None]
    images = torch.stack([image for image, _ in good]) if good else torch.empty(0)
    return images, torch.tensor([position for _, position in good], dtype=torch.int64), skipped


class FileTrainStream:
    """Endless shuffled, augmented batches of an image-folder training split (sharded by global rank)."""

    def __init__(self, paths: np.ndarray, labels: np.ndarray, *, batch_size: int, mean, std, image_size: int, device,
                 shard=(0, 1), num_workers: int = 1, on_corrupt: str = "fail"):
        self.paths, self.labels = paths, torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.transform, self.device = train_transform(image_size, mean, std), device
        self.order = EpochOrder(len(paths), batch_size, shard)
        self.batch_size, self.batches_per_epoch = batch_size, self.order.batches_per_epoch
        self.num_workers, self.on_corrupt = num_workers, on_corrupt
        self.corrupt = CorruptImageLog(paths)

    @property
    def skipped_images(self) -> int:
        return len(self.corrupt.skipped)

    def iterate(self, stream_seed: int, start_step: int = 0):
        epoch, position = divmod(start_step, self.batches_per_epoch)
        while True:
            order = self.order.epoch_order(stream_seed, epoch)[:self.batches_per_epoch * self.batch_size]
            samples = _Samples(self.paths, self.transform, self.on_corrupt, (stream_seed, "augment", epoch))
            loader = DataLoader(samples, batch_size=self.batch_size, sampler=order[position * self.batch_size:].tolist(),
                                num_workers=self.num_workers, collate_fn=_collate, persistent_workers=False)
            for images, index, skipped in loader:
                self.corrupt.record(skipped)
                if len(index) < 2:  # every image of the batch was unreadable: the stream is endless, move on
                    continue
                yield Batch(images.to(self.device), self.labels[index].to(self.device), index.to(self.device))
            epoch, position = epoch + 1, 0


class FileEvalSet:
    """Clean evaluation batches of an image folder: resize + centre crop, in file order."""

    def __init__(self, paths: np.ndarray, labels: np.ndarray, *, batch_size: int, mean, std, image_size: int, device,
                 num_workers: int = 1, on_corrupt: str = "fail"):
        self.paths, self.labels = paths, torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.samples = _Samples(paths, eval_transform(image_size, mean, std), on_corrupt)
        self.batch_size, self.device, self.num_workers = batch_size, device, num_workers
        self.corrupt = CorruptImageLog(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def batches(self):
        loader = DataLoader(self.samples, batch_size=self.batch_size, num_workers=self.num_workers,
                            collate_fn=_collate)
        for images, index, skipped in loader:
            self.corrupt.record(skipped)
            yield images.to(self.device), self.labels[index].to(self.device)
