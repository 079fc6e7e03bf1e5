"""Image-folder datasets in ImageNet's layout: ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG.

Classes are the sorted sub-directory names of train/ (val/ must use the same names). Images stay on
disk; the pipelines (DALI readers.file, or PIL in a torch DataLoader) decode them.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .datasets import register_dataset

ON_CORRUPT_IMAGE = ("fail", "skip")
"""data.on_corrupt_image: what an unreadable image does to a job (always logged)."""

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class FileDataset:
    """Image paths (str) and int64 labels; `classes[label]` is the folder name."""

    paths: np.ndarray
    labels: np.ndarray
    classes: list[str]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def scan_image_folder(root: str | Path, part: str, classes: list[str] | None = None) -> FileDataset:
    """The images of ROOT/part/<class>/; a missing folder, an empty class or an unknown class is a
    clear error naming the path."""
    folder = Path(root) / part
    if not folder.is_dir():
        raise FileNotFoundError(f"missing image folder {folder} (expected ROOT/{part}/<class>/*.JPEG; data.root)")
    found = sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
    if not found:
        raise ValueError(f"{folder} has no class sub-directories (expected {folder}/<class>/*.JPEG)")
    classes = classes or found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise ValueError(f"{folder}: class folder(s) {unknown[:3]} do not exist in train/")
    paths, labels = [], []
    for label, name in enumerate(classes):
        directory = folder / name
        files = sorted(str(p) for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) \
            if directory.is_dir() else []
        if part == "train" and not files:
            raise ValueError(f"class folder {directory} has no images (.JPEG/.jpg/.png)")
        paths += files
        labels += [label] * len(files)
    return FileDataset(np.array(paths), np.array(labels, dtype=np.int64), list(classes))


@register_dataset("imagenet")
def image_folder(cfg) -> tuple[FileDataset, FileDataset | None]:
    """An ImageNet-style folder: data.root/train/<class>/ and the test images, data.test_root/<class>/ (default
    data.root/val/). Without a test folder there is no test set, and trainings report no test accuracy."""
    train = scan_image_folder(cfg.root, "train")
    if cfg.test_root:  # named, so it must be there (scan_image_folder says which path is missing)
        test = Path(cfg.test_root)
        return train, scan_image_folder(test.parent, test.name, train.classes)
    has_test = (Path(cfg.root) / "val").is_dir()
    return train, scan_image_folder(cfg.root, "val", train.classes) if has_test else None


def trusted_folder(path: str | Path, classes: list[str]) -> FileDataset:
    """Images whose labels the user trusts, as <path>/<class>/*.JPEG with the training folder's class names:
    LAW's validation split (its reward and the choice of the policy rest on it). Every class needs images."""
    path = Path(path)
    trusted = scan_image_folder(path.parent, path.name, classes)
    missing = [name for label, name in enumerate(classes) if not np.any(trusted.labels == label)]
    if missing:
        raise ValueError(f"the trusted set {path} has no images of class(es) {', '.join(missing[:5])}"
                         f"{' ...' if len(missing) > 5 else ''} (data.val_root needs every class of train/)")
    return trusted


def decode_rgb(path: str):
    """A PIL RGB image; an unreadable file is a ValueError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise ValueError(f"cannot decode image {path}: {err}") from None


def _intact(path: str) -> bool:
    """A cheap structural check: JPEG starts with SOI and ends with EOI; PNG has its signature and IEND."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(size - 16, 0))
            tail = handle.read().rstrip(b"\x00")
    except OSError:
        return False
    if head[:2] == b"\xff\xd8":
        return tail.endswith(b"\xff\xd9")
    if head == b"\x89PNG\r\n\x1a\n":
        return b"IEND" in tail
    return False


@dataclass
class Screening:
    """How a run screens its images once: rank `rank` of `size` checks every size-th file, the ranks share what
    they found (`allgather`, one collective), and rank 0 keeps it in `cache` with each file's size and
    modification time, so a resumed run re-reads only files that changed. Screening() = alone, uncached."""

    cache: Path | None = None
    rank: int = 0
    size: int = 1
    allgather: Callable | None = None


def _stat(path: str) -> tuple[int, int]:
    try:
        info = os.stat(path)
        return info.st_size, info.st_mtime_ns
    except OSError:
        return -1, -1


def _read_cache(path: Path | None) -> dict:
    """path -> (size, mtime_ns, intact) of an earlier screening ({} if none or unreadable: screen again)."""
    import h5py
    if path is None or not Path(path).is_file():
        return {}
    try:
        with h5py.File(path, "r") as file:
            names = file["paths"][()].tobytes().decode().split("\n")
            sizes, mtimes, intact = file["size"][()], file["mtime_ns"][()], file["intact"][()]
    except (OSError, KeyError, UnicodeDecodeError):
        return {}
    return dict(zip(names, zip(sizes.tolist(), mtimes.tolist(), intact.tolist())))


def _write_cache(path: Path, entries: dict) -> None:
    """Atomically: a temporary file renamed over the old one."""
    import h5py
    names = list(entries)
    values = np.array([entries[name] for name in names], dtype=np.int64).reshape(-1, 3)
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    with h5py.File(tmp, "w") as file:
        file.create_dataset("paths", data=np.frombuffer("\n".join(names).encode(), dtype=np.uint8),
                            compression="gzip", compression_opts=1)
        for column, name in enumerate(("size", "mtime_ns", "intact")):
            file.create_dataset(name, data=values[:, column])
    os.replace(tmp, path)


def screen_images(paths, screening: Screening | None = None, threads: int = 8) -> np.ndarray:
    """Positions in `paths` of damaged files (the structural check of `damaged_files`), each file read once per
    run: unchanged files (size, mtime) are taken from the cache, the rest split over the ranks."""
    from concurrent.futures import ThreadPoolExecutor
    screening = screening or Screening()
    paths = [str(p) for p in paths]
    mine = list(range(screening.rank, len(paths), screening.size))
    cached = _read_cache(screening.cache)  # every rank reads it; rank 0 alone writes it
    with ThreadPoolExecutor(threads) as pool:
        stats = list(pool.map(_stat, [paths[i] for i in mine], chunksize=256))
        fresh = [k for k, i in enumerate(mine) if cached.get(paths[i], (None, None, 0))[:2] != stats[k]]
        checked = dict(zip(fresh, pool.map(_intact, [paths[mine[k]] for k in fresh], chunksize=256)))
    found = [(i, *stats[k], int(checked[k] if k in checked else cached[paths[i]][2])) for k, i in enumerate(mine)]
    everyone = screening.allgather(found) if screening.allgather else [found]
    result = [entry for part in everyone for entry in part]
    if screening.cache is not None and screening.rank == 0:
        cached.update({paths[i]: (size, mtime, ok) for i, size, mtime, ok in result})
        _write_cache(screening.cache, cached)
    return np.array(sorted(i for i, _, _, ok in result if not ok), dtype=np.int64)


def damaged_paths(subsets, screening: Screening | None = None) -> set:
    """The damaged files among those of `subsets` (screened once per run, `screen_images`)."""
    every = np.concatenate([subset.source.paths[subset.index] for subset in subsets])
    return set(every[screen_images(every, screening)].tolist())


def damaged_files(paths, threads: int = 8) -> list[int]:
    """Positions of files in `paths` that fail the structural check (read in parallel: I/O bound).

    Screening before DALI matters: DALI 2.4's CPU decoder can crash the process (not raise) on a
    broken file in a large batch, so we never hand it one we can detect."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(threads) as pool:
        return [i for i, ok in enumerate(pool.map(_intact, paths, chunksize=256)) if not ok]


class CorruptImageLog:
    """Counts and reports skipped unreadable images (data.on_corrupt_image=skip): never silent, and each file once
    however often an epoch or an evaluation meets it again."""

    def __init__(self, paths):
        self.paths, self.skipped = paths, {}

    def record(self, positions) -> None:
        for position in positions:
            path = self.paths[position]
            if path not in self.skipped:
                self.skipped[path] = None
                print(f"[law] WARNING: skipped unreadable image {path} ({len(self.skipped)} so far)", file=sys.stderr,
                      flush=True)
