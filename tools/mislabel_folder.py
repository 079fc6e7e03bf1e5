"""Make an ImageNet-style folder noisy the way real ones are, and set a trusted subset aside.

    python tools/export_dataset.py --format imagenet --out /tmp/fm --per-class 620 --test-per-class 100
    python tools/mislabel_folder.py /tmp/fm --rate 0.4 --trusted-per-class 20 --seed 0

Moves `--trusted-per-class` images of every class from ROOT/train/<class>/ to ROOT/trusted/<class>/ (their
labels stay right: the user's checked images), then moves a `--rate` fraction of the remaining training files
into another class folder, drawn uniformly (what a web crawl or a careless annotator leaves). The moves are
listed in ROOT/mislabelled.txt. Nothing is copied: run it on an export made for the purpose.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="an ImageNet-style folder (ROOT/train/<class>/...)")
    parser.add_argument("--rate", type=float, default=0.4, help="fraction of training files moved to a wrong class")
    parser.add_argument("--trusted-per-class", type=int, default=20, help="images per class set aside as trusted")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root, rng = Path(args.root), np.random.default_rng(args.seed)
    classes = sorted(entry.name for entry in (root / "train").iterdir() if entry.is_dir())
    for name in classes:
        files = sorted((root / "train" / name).iterdir())
        (root / "trusted" / name).mkdir(parents=True, exist_ok=True)
        for path in rng.choice(files, size=args.trusted_per_class, replace=False):
            shutil.move(str(path), root / "trusted" / name / path.name)
    files = sorted(path for name in classes for path in (root / "train" / name).iterdir())
    moved = rng.choice(len(files), size=round(args.rate * len(files)), replace=False)
    with open(root / "mislabelled.txt", "w") as listing:
        for index in sorted(moved):
            path = files[index]
            wrong = [name for name in classes if name != path.parent.name]
            target = root / "train" / wrong[rng.integers(len(wrong))] / path.name
            shutil.move(str(path), target)
            listing.write(f"{path.parent.name}/{path.name} -> {target.parent.name}\n")
    print(f"{root}: {len(moved)} of {len(files)} training files in a wrong class folder; "
          f"{args.trusted_per_class} per class in {root / 'trusted'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
