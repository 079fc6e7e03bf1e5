"""A training from an image folder against the same training from in-memory arrays, side by side in one run.

    python tools/bench_folder_training.py [--per-class 600] [--epochs 3] [--repeats 2]

Fashion-MNIST written out as JPEGs in ImageNet's folder layout (--per-class images per class; 6,000 by default),
then `python -m law_hpc.train` of the default MLP on 28 px images, augment none, one thread: from the in-memory
arrays (greyscale: the folder's JPEGs are RGB, so its MLP's first layer is 3x wider), from the folder decoded into
memory once (data.decoded_cache_mb, the default), and from the folder read file by file every epoch
(data.decoded_cache_mb=0). Each run's training throughput is the best epoch's
samples_per_second of train.h5 (evaluation excluded); the runs are interleaved --repeats times, the best kept.
Prints each mode's samples/s and its ratio to the arrays'.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py

REPO = Path(__file__).resolve().parent.parent
MODES = {
    "in-memory arrays": ["data.dataset=fmnist"],
    "folder, decoded once (default)": ["data.dataset=imagenet", "data.root={folder}"],
    "folder, file by file (data.decoded_cache_mb=0)": ["data.dataset=imagenet", "data.root={folder}",
                                                       "data.decoded_cache_mb=0"],
}


def train_throughput(run_dir: Path, overrides: list[str]) -> float:
    """The best epoch's training samples/s of one law_hpc.train run."""
    cmd = [sys.executable, "-m", "law_hpc.train", "--method", "uniform", "--run-dir", str(run_dir)]
    for override in overrides:
        cmd += ["--set", override]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    with h5py.File(run_dir / "train.h5", "r") as log:
        return float(log["epochs/samples_per_second"][()].max())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=600, help="training images per class in the folder")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "folder"
        subprocess.run([sys.executable, str(REPO / "tools" / "export_dataset.py"), "--format", "imagenet", "--out",
                        str(folder), "--per-class", str(args.per_class), "--test-per-class", "100"], check=True,
                       capture_output=True)
        total = 10 * args.per_class
        common = ["data.image_size=28", "data.augment=none", f"data.train_size={total - 500}",
                  "data.val_size=500", "data.test_size=1000", f"optim.epochs={args.epochs}", "threads_per_rank=1",
                  "data.num_workers=1", "model.name=mlp"]
        best = {mode: 0.0 for mode in MODES}
        for repeat in range(args.repeats):
            for index, (mode, overrides) in enumerate(MODES.items()):
                run_dir = Path(tmp) / f"{repeat}-{index}"
                overrides = [override.format(folder=folder) for override in overrides]
                best[mode] = max(best[mode], train_throughput(run_dir, common + overrides))
    arrays = best["in-memory arrays"]
    print(f"MLP, 28 px, {total} training images, augment none, one thread; best epoch of {args.repeats} repeats\n")
    print("| training from | samples/s | / in-memory arrays |\n| --- | ---: | ---: |")
    for mode, throughput in best.items():
        print(f"| {mode} | {throughput:,.0f} | {throughput / arrays:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
