"""Input pipeline throughput: DALI on the CPU against a torch DataLoader on the same cores, side by side.

    python tools/bench_data.py [--workers 2] [--batches 30] [--image-size 224] [--epoch-images 3000]

JPEG folder (Fashion-MNIST exported in ImageNet's layout): random-resized-crop + flip + normalise,
DALI readers.file + decoders.image vs a DataLoader of PIL + torchvision transforms in worker processes.
In-memory 32x32 arrays (the CIFAR path): pad-4 crop + flip + normalise, DALI external_source vs the
classic per-sample DataLoader; law_hpc's own batched torch stream is measured beside them.
Every pipeline gets `--workers` threads/processes; the ratios are what to read on a noisy machine.
Epoch costs on the JPEG folder: the screening for damaged files (once per run, then from the cache) and two
consecutive epochs of one stream: epoch 2 should cost no more than epoch 1, which also starts the pipeline.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))
from export_dataset import to_rgb32, write_imagenet  # noqa: E402
from law_hpc.data.arrays import load_fmnist  # noqa: E402
from law_hpc.data.dali import DaliArrayTrainStream, DaliFileTrainStream  # noqa: E402
from law_hpc.data.folders import Screening, scan_image_folder, screen_images  # noqa: E402
from law_hpc.data.torch_backend import ArrayTrainStream  # noqa: E402
from law_hpc.data.torch_files import FileTrainStream  # noqa: E402

CPU = torch.device("cpu")
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def seconds(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def epoch_seconds(stream, epochs: int = 2) -> list[float]:
    """Wall time of each of `epochs` consecutive epochs of ONE iterate() (the first includes pipeline start)."""
    iterator = stream.iterate(0)
    return [seconds(lambda: [next(iterator) for _ in range(stream.batches_per_epoch)]) for _ in range(epochs)]


def epoch_costs(folder, args, common) -> list[str]:
    """Markdown rows: screening (uncached, cached) and epochs 1 and 2 of the DALI and torch folder streams."""
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "screened.h5"
        screen = seconds(lambda: screen_images(folder.paths, Screening(cache)))
        again = seconds(lambda: screen_images(folder.paths, Screening(cache)))
    rows = [f"screening {len(folder.paths)} files: {screen:.2f} s once, {again:.2f} s from the cache (a resumed run)",
            "", "| pipeline | epoch 1 (s) | epoch 2 (s) | epoch 2 / epoch 1 |", "| --- | ---: | ---: | ---: |"]
    streams = {"DALI-CPU (external_source, one pipeline)":
               lambda: DaliFileTrainStream(folder.paths, folder.labels, num_threads=args.workers, damaged=[], **common),
               "torch DataLoader (v2 transforms, one loader)":
               lambda: FileTrainStream(folder.paths, folder.labels, num_workers=args.workers, **common)}
    for name, make in streams.items():
        first, second = epoch_seconds(make())
        rows.append(f"| {name} | {first:.2f} | {second:.2f} | {second / first:.2f} |")
    return rows


def images_per_second(stream, batches: int, batch_size: int) -> float:
    iterator = stream.iterate(0)
    for _ in range(3):  # warm-up: worker start, first decodes
        next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - started)


class ClassicArrayLoader:
    """The textbook CIFAR DataLoader: per-sample RandomCrop(32, 4) + flip + ToTensor + Normalize in workers."""

    def __init__(self, images, labels, batch_size, workers):
        from torch.utils.data import DataLoader, Dataset
        from torchvision import transforms as T
        transform = T.Compose([T.ToPILImage(), T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                               T.Normalize(MEAN, STD)])

        class Arrays(Dataset):
            def __len__(self):
                return len(labels)

            def __getitem__(self, i):
                return transform(images[i]), labels[i]

        self.loader = DataLoader(Arrays(), batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True,
                                 persistent_workers=workers > 0)

    def iterate(self, _seed):
        while True:
            yield from self.loader


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="threads (DALI) / worker processes (DataLoader)")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224, help="JPEG training crop")
    parser.add_argument("--per-class", type=int, default=300, help="JPEGs per class to export")
    parser.add_argument("--epoch-images", type=int, default=3000, help="JPEGs of the epoch-cost folder (0: skip)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    fmnist = load_fmnist("/usr/share/datasets/fashion-mnist", "train")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        keep = np.concatenate([np.flatnonzero(fmnist.labels == c)[:args.per_class] for c in range(10)])
        write_imagenet(Path(tmp), {"train": (fmnist.images[keep], fmnist.labels[keep])})
        folder = scan_image_folder(tmp, "train")
        common = dict(batch_size=args.batch_size, mean=MEAN, std=STD, image_size=args.image_size, device=CPU)
        dali = DaliFileTrainStream(folder.paths, folder.labels, num_threads=args.workers, **common)
        torch_loader = FileTrainStream(folder.paths, folder.labels, num_workers=args.workers, **common)
        jpeg = [images_per_second(s, args.batches, args.batch_size) for s in (dali, torch_loader)]
        rows.append((f"JPEG folder, {args.image_size}px crop", jpeg[0], jpeg[1], None))
    costs = []
    if args.epoch_images:
        with tempfile.TemporaryDirectory() as tmp:
            per_class = args.epoch_images // 10
            keep = np.concatenate([np.flatnonzero(fmnist.labels == c)[:per_class] for c in range(10)])
            write_imagenet(Path(tmp), {"train": (fmnist.images[keep], fmnist.labels[keep])})
            folder = scan_image_folder(tmp, "train")
            common = dict(batch_size=args.batch_size, mean=MEAN, std=STD, image_size=args.image_size, device=CPU)
            costs = epoch_costs(folder, args, common)
    rgb = to_rgb32(fmnist.images[:20000])
    labels = fmnist.labels[:20000]
    arrays_common = dict(batch_size=args.batch_size, mean=MEAN, std=STD, augment="crop_flip", device=CPU)
    dali = DaliArrayTrainStream(rgb, labels, num_threads=args.workers, **arrays_common)
    classic = ClassicArrayLoader(rgb, labels, args.batch_size, args.workers)
    batched = ArrayTrainStream(rgb, labels, **arrays_common)
    arrays = [images_per_second(s, args.batches * 4, args.batch_size) for s in (dali, classic, batched)]
    rows.append(("32x32 arrays, pad-4 crop + flip", *arrays))
    print(f"images/s with {args.workers} workers, batch {args.batch_size}\n")
    print("| data | DALI-CPU | torch DataLoader | DALI / DataLoader | law_hpc batched torch |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, dali_rate, loader_rate, batched_rate in rows:
        extra = f"{batched_rate:,.0f}" if batched_rate else "-"
        print(f"| {name} | {dali_rate:,.0f} | {loader_rate:,.0f} | {dali_rate / loader_rate:.2f}x | {extra} |")
    if costs:
        print(f"\nepoch costs, JPEG folder, {args.image_size}px crop, batch {args.batch_size}, {args.workers} workers\n")
        print("\n".join(costs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
