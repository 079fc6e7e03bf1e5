"""The torch backend for image folders: PIL decoding and torchvision transforms v2 in one DataLoader per stream.

Augmentation of a sample is seeded by (stream_seed, epoch, position), so batches are a pure function
of (stream_seed, step) whatever the number of workers, and a resumed run gets the same batches. The
DataLoader is built once per `iterate()` (its sampler runs on from epoch to epoch, each epoch in its own
order), its workers stay up, and batches come through pinned memory when the device is a GPU.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..seeding import derive_seed
from .folders import CorruptImageLog, decode_rgb
from .order import EpochOrder
from .types import Batch


def train_transform(image_size: int, mean, std, augment: str = "random_resized_crop"):
    """data.augment for image folders: none (resize + centre crop, as evaluated), flip (the same, flipped
    horizontally at random), random_resized_crop or crop_flip (the ImageNet recipe: random-resized-crop + flip)."""
    from torchvision.transforms import v2
    if augment == "none":
        return eval_transform(image_size, mean, std)
    if augment == "flip":
        return v2.Compose([*eval_transform(image_size, mean, std).transforms[:3], v2.RandomHorizontalFlip(),
                           v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
    return v2.Compose([v2.ToImage(), v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip(),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def eval_transform(image_size: int, mean, std):
    from torchvision.transforms import v2
    return v2.Compose([v2.ToImage(), v2.Resize(round(image_size * 256 / 224), antialias=True),
                       v2.CenterCrop(image_size), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


class _Samples(Dataset):
    """(image tensor, position) per key; a key is a position (evaluation) or (epoch, position) (training, the
    augmentation seeded by (stream_seed, "augment", epoch, position)). An unreadable image raises, or under
    'skip' yields None."""

    def __init__(self, paths, transform, on_corrupt: str, stream_seed: int | None = None):
        self.paths, self.transform, self.on_corrupt, self.stream_seed = paths, transform, on_corrupt, stream_seed

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, key):
        epoch, position = key if isinstance(key, tuple) else (None, key)
        try:
            image = decode_rgb(self.paths[position])
        except ValueError:
            if self.on_corrupt == "skip":
                return None, position
            raise
        if epoch is None:
            return self.transform(image).as_subclass(torch.Tensor), position
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.stream_seed, "augment", epoch, position))
            return self.transform(image).as_subclass(torch.Tensor), position


class _EpochKeys(Sampler):
    """(epoch, position) keys from `start_step` on, epoch after epoch, each epoch in its EpochOrder: one
    DataLoader serves the whole run."""

    def __init__(self, order: EpochOrder, stream_seed: int, start_step: int):
        self.order, self.stream_seed, self.start_step = order, stream_seed, start_step

    def __iter__(self):
        batch, per_epoch = self.order.batch_size, self.order.batches_per_epoch
        epoch, position = divmod(self.start_step, per_epoch)
        while True:
            for key in self.order.epoch_order(self.stream_seed, epoch)[position * batch:per_epoch * batch]:
                yield epoch, int(key)
            epoch, position = epoch + 1, 0


def _collate(samples):
    """Stack the readable samples; report the positions of skipped (corrupt) ones."""
    good = [(image, position) for image, position in samples if image is not None]
    skipped = [position for image, position in samples if image is None]
    images = torch.stack([image for image, _ in good]) if good else torch.empty(0)
    return images, torch.tensor([position for _, position in good], dtype=torch.int64), skipped


def _loader(dataset, sampler, batch_size: int, num_workers: int, device) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, collate_fn=_collate,
                      pin_memory=device.type == "cuda", persistent_workers=num_workers > 0)


class FileTrainStream:
    """Endless shuffled, augmented batches of an image-folder training split (sharded by global rank)."""

    def __init__(self, paths: np.ndarray, labels: np.ndarray, *, batch_size: int, mean, std, image_size: int, device,
                 shard=(0, 1), num_workers: int = 1, on_corrupt: str = "fail", augment: str = "random_resized_crop"):
        self.paths, self.labels = paths, torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.transform, self.device = train_transform(image_size, mean, std, augment), device
        self.order = EpochOrder(len(paths), batch_size, shard)
        self.batch_size, self.batches_per_epoch = batch_size, self.order.batches_per_epoch
        self.num_workers, self.on_corrupt = num_workers, on_corrupt
        self.corrupt = CorruptImageLog(paths)

    @property
    def skipped_images(self) -> int:
        return len(self.corrupt.skipped)

    def iterate(self, stream_seed: int, start_step: int = 0):
        samples = _Samples(self.paths, self.transform, self.on_corrupt, stream_seed)
        loader = _loader(samples, _EpochKeys(self.order, stream_seed, start_step), self.batch_size, self.num_workers,
                         self.device)
        for images, index, skipped in loader:
            self.corrupt.record(skipped)
            if len(index) < 2:  # every image of the batch was unreadable: the stream is endless, move on
                continue
            yield Batch(images.to(self.device, non_blocking=True), self.labels[index].to(self.device),
                        index.to(self.device))


class FileEvalSet:
    """Clean evaluation batches of an image folder: resize + centre crop, in file order."""

    def __init__(self, paths: np.ndarray, labels: np.ndarray, *, batch_size: int, mean, std, image_size: int, device,
                 num_workers: int = 1, on_corrupt: str = "fail"):
        self.paths, self.labels = paths, torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.device = device
        self.corrupt = CorruptImageLog(paths)
        self.loader = _loader(_Samples(paths, eval_transform(image_size, mean, std), on_corrupt), None, batch_size,
                              num_workers, device)  # built once: its workers serve every evaluation

    def __len__(self) -> int:
        return len(self.paths)

    def batches(self):
        for images, index, skipped in self.loader:
            self.corrupt.record(skipped)
            yield images.to(self.device, non_blocking=True), self.labels[index].to(self.device)
