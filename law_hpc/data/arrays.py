"""In-memory image datasets: Fashion-MNIST from its IDX files, CIFAR-10/100 from their pickle batches."""
from __future__ import annotations

import gzip
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .datasets import register_dataset


@dataclass
class ArrayDataset:
    """uint8 images [N, H, W, C] and int64 labels [N]."""

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str] | None = None
    """Class names in label order (an image folder decoded into memory); None for the built-in datasets."""

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


@register_dataset("fmnist")
def fmnist(cfg) -> tuple[ArrayDataset, ArrayDataset]:
    """Fashion-MNIST from the IDX files in data.root (Debian's dataset-fashion-mnist)."""
    return load_fmnist(cfg.root, "train"), load_fmnist(cfg.root, "test")


CIFAR_FILES = {
    "cifar10": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
    "cifar100": {"train": ["train"], "test": ["test"]},
}


def _read_cifar_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"missing dataset file {path} (expected the CIFAR python pickle layout)")
    try:
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
        data, labels = np.asarray(batch[b"data"], dtype=np.uint8), np.asarray(batch[label_key], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path} is not a CIFAR python batch ({type(err).__name__}: {err})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise ValueError(f"{path}: data of shape {data.shape} with {len(labels)} labels, expected [N, 3072] and N labels")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def load_cifar(root: str | Path, part: str, name: str = "cifar10") -> ArrayDataset:
    """CIFAR-10/100 `part` ('train' or 'test') from the python pickle directory (cifar-10-batches-py,
    cifar-100-python) as 32x32x3 uint8 images; CIFAR-100 uses the 100 fine labels."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset directory {root} does not exist (data.root)")
    label_key = b"labels" if name == "cifar10" else b"fine_labels"
    parts = [_read_cifar_batch(root / file, label_key) for file in CIFAR_FILES[name][part]]
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    # per-channel statistics (CIFAR's usual constants, computed so exports work too); the pipelines
    # normalise every split with the training part's
    pixels = images[::7].reshape(-1, 3).astype(np.float64) / 255.0
    return ArrayDataset(images, labels, 10 if name == "cifar10" else 100, tuple(pixels.mean(0)), tuple(pixels.std(0)))


@register_dataset("cifar10")
def cifar10(cfg) -> tuple[ArrayDataset, ArrayDataset]:
    """CIFAR-10 from its python pickle directory in data.root."""
    return load_cifar(cfg.root, "train", "cifar10"), load_cifar(cfg.root, "test", "cifar10")


@register_dataset("cifar100")
def cifar100(cfg) -> tuple[ArrayDataset, ArrayDataset]:
    """CIFAR-100 (fine labels) from its python pickle directory in data.root."""
    return load_cifar(cfg.root, "train", "cifar100"), load_cifar(cfg.root, "test", "cifar100")
