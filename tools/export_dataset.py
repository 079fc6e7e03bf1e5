"""Write an in-memory dataset (Fashion-MNIST by default) out in ImageNet's or CIFAR's on-disk format.

    python tools/export_dataset.py --format imagenet --out /data/fmnist-imagenet [--per-class 600]
    python tools/export_dataset.py --format cifar10 --out /data/fmnist-cifar10

imagenet: OUT/train/<wnid>/<name>.JPEG and OUT/val/<wnid>/<name>.JPEG (RGB JPEGs, wnid = n%08d);
cifar10 / cifar100: OUT/data_batch_1..5 + test_batch (or train + test) python pickles of 32x32x3
images (28x28 images are zero-padded to 32x32, grey replicated to RGB). Then run the real ImageNet
or CIFAR path on them: --set data.dataset=imagenet data.root=OUT (or cifar10).
"""
from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from law_hpc.data.arrays import load_cifar, load_fmnist  # noqa: E402


def take_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    """The first `per_class` indices of every class (all when 0), in index order."""
    if not per_class:
        return np.arange(len(labels))
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]))


def to_rgb32(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, C] -> [N, 32, 32, 3]: centre zero-padding, grey replicated to RGB."""
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    pad_h, pad_w = 32 - images.shape[1], 32 - images.shape[2]
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f"images of {images.shape[1]}x{images.shape[2]} do not fit CIFAR's 32x32")
    return np.pad(images, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))


def write_imagenet(out: Path, parts: dict, quality: int = 90) -> None:
    from PIL import Image
    for folder, (images, labels) in parts.items():
        for i, (image, label) in enumerate(zip(images, labels)):
            directory = out / folder / f"n{label:08d}"
            directory.mkdir(parents=True, exist_ok=True)
            pixels = image[..., 0] if image.shape[-1] == 1 else image
            Image.fromarray(pixels).convert("RGB").save(directory / f"{folder}_{i:07d}.JPEG", quality=quality)


def write_cifar(out: Path, parts: dict, name: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    label_key = b"labels" if name == "cifar10" else b"fine_labels"
    images, labels = parts["train"]
    chunks = np.array_split(np.arange(len(labels)), 5) if name == "cifar10" else [np.arange(len(labels))]
    files = [f"data_batch_{i + 1}" for i in range(5)] if name == "cifar10" else ["train"]
    batches = [(file, images[chunk], labels[chunk]) for file, chunk in zip(files, chunks)]
    batches.append(("test_batch" if name == "cifar10" else "test", *parts["test"]))
    for file, batch_images, batch_labels in batches:
        rgb = to_rgb32(batch_images)
        payload = {b"data": rgb.transpose(0, 3, 1, 2).reshape(len(rgb), -1), label_key: batch_labels.tolist(),
                   b"batch_label": file.encode()}
        with open(out / file, "wb") as handle:
            pickle.dump(payload, handle, protocol=2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", required=True, choices=["imagenet", "cifar10", "cifar100"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--source", default="fmnist", choices=["fmnist", "cifar10", "cifar100"])
    parser.add_argument("--root", default="/usr/share/datasets/fashion-mnist", help="the source dataset's directory")
    parser.add_argument("--per-class", type=int, default=0, help="training images per class (0 = all)")
    parser.add_argument("--test-per-class", type=int, default=0, help="test images per class (0 = all)")
    args = parser.parse_args(argv)
    load = load_fmnist if args.source == "fmnist" else lambda root, part: load_cifar(root, part, args.source)
    try:
        train, test = load(args.root, "train"), load(args.root, "test")
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    parts = {}
    for folder, data, per_class in (("train", train, args.per_class), ("test", test, args.test_per_class)):
        keep = take_per_class(data.labels, per_class)
        parts[folder] = (data.images[keep], data.labels[keep])
    out = Path(args.out)
    if args.format == "imagenet":
        write_imagenet(out, {"train": parts["train"], "val": parts["test"]})
    else:
        write_cifar(out, parts, args.format)
    print(f"wrote {sum(len(labels) for _, labels in parts.values())} images to {out} ({args.format} layout)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
