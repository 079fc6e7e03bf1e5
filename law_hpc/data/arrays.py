"""In-memory image datasets: Fashion-MNIST from its IDX files (CIFAR readers live beside it)."""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class ArrayDataset:
    """uint8 images [N, H, W, C] and int64 labels [N]."""

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self):
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        bad = (self.labels < 0) | (self.labels >= self.num_classes)
        if bad.any():
            raise ValueError(f"label {int(self.labels[bad][0])} out of range [0, {self.num_classes}) "
                             f"at index {int(np.flatnonzero(bad)[0])}")


FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)


def _read_idx(path: Path, magic: int, header: int) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"missing dataset file {path} (Fashion-MNIST: apt-get install dataset-fashion-mnist)")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"cannot read {path}: {err}") from None
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise ValueError(f"{path} is not an IDX file of the expected kind (magic {found:#x}, expected {magic:#x})")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range((header - 4) // 4)]
    data = np.frombuffer(bytearray(raw), dtype=np.uint8, offset=header)  # writable: torch shares it
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: {data.size} bytes of data for dimensions {dims}")
    return data.reshape(dims)


def load_fmnist(root: str | Path, part: str) -> ArrayDataset:
    """Fashion-MNIST `part` ('train' 60k or 'test' 10k) as 28x28x1 uint8 images."""
    image_file, label_file = FMNIST_FILES[part]
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset directory {root} does not exist (data.root)")
    images = _read_idx(root / image_file, 0x00000803, 16)
    labels = _read_idx(root / label_file, 0x00000801, 8).astype(np.int64)
    return ArrayDataset(images[..., None], labels, 10, FMNIST_MEAN, FMNIST_STD)
