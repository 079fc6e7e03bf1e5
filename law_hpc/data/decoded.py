"""Image folders decoded once into memory. Without augmentation a folder's training batches are the same resized,
centre-cropped images every epoch. With the torch backend, when they fit `data.decoded_cache_mb`, each file is
decoded once (resize + centre crop, as the evaluation transform does) into a uint8 array and the job runs on the
in-memory path: the same batches as decoding every file every epoch, at array speed
(tools/bench_folder_training.py measures it)."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .arrays import ArrayDataset
from .folders import FileDataset, decode_rgb


def decoded_megabytes(count: int, image_size: int) -> float:
    """MiB that `count` decoded RGB images of image_size x image_size take as uint8."""
    return count * image_size * image_size * 3 / 2**20


def wants_decoding(cfg, *sources) -> bool:
    """Whether the folders among `sources` are decoded into memory: the torch backend (PIL decoding: DALI decodes
    otherwise, on the GPU where there is one), augment none, and they fit the budget."""
    folders = [s for s in sources if isinstance(s, FileDataset)]
    count = sum(len(s.paths) for s in folders)
    return (bool(folders) and cfg.backend == "torch" and cfg.augment == "none" and cfg.decoded_cache_mb > 0
            and decoded_megabytes(count, cfg.image_size) <= cfg.decoded_cache_mb)


class _Decode(Dataset):
    def __init__(self, paths, transform):
        self.paths, self.transform = paths, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, position):
        try:
            return self.transform(decode_rgb(self.paths[position])).as_subclass(torch.Tensor)
        except ValueError:  # a damaged file: the per-file path reports it (fail) or leaves it out (skip)
            return None


def decode_folder(source: FileDataset, cfg) -> ArrayDataset | None:
    """`source` as uint8 arrays [N, S, S, 3] (S = data.image_size), resized and centre-cropped as evaluation does;
    None if a file is damaged (the per-file path then fails naming it, or skips it, as data.on_corrupt_image says)."""
    from .torch_files import eval_transform
    resize_and_crop = eval_transform(cfg.image_size, source.mean, source.std).transforms[:3]
    from torchvision.transforms import v2
    loader = DataLoader(_Decode(source.paths, v2.Compose(resize_and_crop)), batch_size=256,
                        num_workers=cfg.num_workers, collate_fn=list)
    images = np.empty((len(source.paths), cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
    position = 0
    for batch in loader:
        for image in batch:
            if image is None:
                return None
            images[position] = image.permute(1, 2, 0).numpy()
            position += 1
    return ArrayDataset(images, np.asarray(source.labels, dtype=np.int64), source.num_classes, tuple(source.mean),
                        tuple(source.std), classes=list(source.classes))


def decoded_sources(cfg, sources: list, announce=print) -> list:
    """`sources` (FileDatasets, ArrayDatasets or None) with every folder decoded into memory when `wants_decoding`;
    unchanged otherwise, or when a file is damaged (the per-file path deals with it)."""
    if not wants_decoding(cfg, *sources):
        return sources
    decoded = [decode_folder(s, cfg) if isinstance(s, FileDataset) else s for s in sources]
    if any(d is None for d, s in zip(decoded, sources) if s is not None):
        announce("[law] a damaged image: the folders are read file by file (data.on_corrupt_image says what it does)")
        return sources
    count = sum(len(s.paths) for s in sources if isinstance(s, FileDataset))
    announce(f"[law] decoded {count} images into memory once ({decoded_megabytes(count, cfg.image_size):.0f} MiB "
             f"of data.decoded_cache_mb {cfg.decoded_cache_mb}): epochs read arrays, not files")
    return decoded
