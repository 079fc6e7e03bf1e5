#!/usr/bin/env python
"""What a search stage costs against plain training, side by side in one run.

    python tools/bench_search.py [--config configs/fmnist_noisy.yaml] [--modes sequential fused] [--ranks 1 2]
    python tools/bench_search.py --config configs/fmnist_noisy_mlp.yaml --quick     # a trial, about a minute

Runs, one after the other, with one torch thread per rank and the config's data (augmentation as configured):
a plain training (`law_hpc.train --method uniform`), then a one-episode search per pair mode and rank count
(`horovodrun -np N` for N > 1; every searcher trains on its own copy of the search split, so np 2 is weak
scaling). From train.h5 and metrics.h5 it prints, per search: the samples/s per rank of warm-up and weighted
stages (whole stage time: training, evaluation, strategy update, checkpoint; median over stages; with
--repeats the fastest run of each), the weighted stage against two plain trainings (time per sample: > 1 costs more than training the two nets
apart), the weak scaling np N / np 1 of weighted stages, and the shares of weighted-stage time spent in the
item features and weights, the evaluation, the strategy update with its allreduce, and the checkpoint, beside
the pair's own training and the rest (mostly the wait at the stage's collectives for the slowest rank).
The machine's other load moves every figure; compare the rows of one run, not runs.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from law_hpc.io.metrics import read_stages  # noqa: E402

PYTHON = sys.executable
HOROVODRUN = str(Path(PYTHON).parent / "horovodrun")
SHARES = {"features+weights": "weights_seconds", "evaluation": "evaluate_seconds",
          "strategy update+allreduce": "learn_seconds", "checkpoint": "checkpoint_seconds"}
PARTS = ("pair training", *SHARES, "other")
"""The columns of a weighted stage's time: the pair's own training, the LAW machinery, the rest."""


def schedule_overrides(epochs: int, stages: int, images: int) -> list[str]:
    """A short episode: `epochs` epochs in `stages` stages, the first half warm-up, the lr decayed once."""
    overrides = [f"optim.epochs={epochs}", "search.epochs=0", f"search.stages={stages}",
                 f"search.warmup_stages={stages // 2}", f"optim.lr_decay_stages=[{stages - 1}]",
                 "search.episodes=1", "threads_per_rank=1", "log.tensorboard=false"]
    if images:
        overrides += [f"data.search_train_size={images}", f"data.train_size={images}"]
    return overrides


def run(module: str, run_dir: Path, config: str, overrides: list[str], ranks: int = 1) -> None:
    cmd = [PYTHON, "-m", module, "--config", config, "--run-dir", str(run_dir)]
    for assignment in overrides:
        cmd += ["--set", assignment]
    if ranks > 1:
        cmd = [HOROVODRUN, "-np", str(ranks), "-H", f"localhost:{ranks}", "--gloo"] + cmd
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    print(f"  {module} np {ranks} {' '.join(overrides[-1:])}: {time.perf_counter() - started:.0f} s", flush=True)


def plain_samples_per_second(run_dir: Path) -> float:
    """Median training samples/s over the epochs of train.h5 (the first epoch included: so is the search's)."""
    with h5py.File(run_dir / "train.h5", "r") as f:
        return float(np.median(f["epochs/samples_per_second"][()]))


def search_figures(run_dir: Path) -> dict:
    """Per-rank samples/s of warm-up and weighted stages (whole stage time, median) and the time shares."""
    c = read_stages(run_dir / "metrics.h5")
    samples = c["samples_per_second"] * c["train_seconds"]
    stage_seconds = c["stage_seconds"] + c["checkpoint_seconds"]  # stage_seconds ends before the checkpoint
    per_stage = samples / stage_seconds
    weighted = c["weighted"] == 1
    figures = {"warm-up": float(np.median(per_stage[~weighted])), "weighted": float(np.median(per_stage[weighted])),
               "weighted training": float(np.median(c["samples_per_second"][weighted]))}
    stage_time = stage_seconds[weighted].sum()
    figures.update({share: c[column][weighted].sum() / stage_time for share, column in SHARES.items()})
    figures["pair training"] = (c["train_seconds"] - c["weights_seconds"])[weighted].sum() / stage_time
    # the rest: waiting at the stage's collectives for the slowest rank, the reward, logging
    figures["other"] = 1.0 - figures["pair training"] - sum(figures[share] for share in SHARES)
    return figures


def table(plain: float, results: dict, ranks: list[int]) -> str:
    lines = [f"plain training (law_hpc.train --method uniform, 1 rank): {plain:,.0f} samples/s; two plain "
             f"trainings: {plain / 2:,.0f} samples/s", "",
             "| pair mode | np | warm-up samples/s/rank | weighted samples/s/rank | weighted / two plain | "
             "pair training only / two plain | weak scaling np/np1 | " + " | ".join(PARTS) + " |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in PARTS) + " |"]
    for (mode, np_), f in results.items():
        base = results.get((mode, ranks[0]))
        scaling = f"{f['weighted'] / base['weighted']:.2f}" if base and np_ != ranks[0] else ""
        lines.append(f"| {mode} | {np_} | {f['warm-up']:,.0f} | {f['weighted']:,.0f} | {plain / 2 / f['weighted']:.3f} | "
                     f"{plain / 2 / f['weighted training']:.3f} | {scaling} | "
                     + " | ".join(f"{100 * f[part]:.1f} %" for part in PARTS) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "fmnist_noisy.yaml"),
                        help="small_cnn: configs/fmnist_noisy.yaml (default); MLP: configs/fmnist_noisy_mlp.yaml")
    parser.add_argument("--modes", nargs="+", default=["sequential", "fused"], help="search.pair_mode values")
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2], help="searchers (horovodrun -np)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of the plain training and of the episode")
    parser.add_argument("--stages", type=int, default=3,
                        help="stages of the episode, the first half (rounded down) warm-up; 2 epochs each by default, "
                        "as in the configs' schedule (20 epochs, 10 stages)")
    parser.add_argument("--images", type=int, default=0, help="training images (0: the config's)")
    parser.add_argument("--quick", action="store_true", help="a trial: 2 epochs of 3000 images")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more config overrides")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run everything this many times, interleaved; the fastest of each is kept")
    parser.add_argument("--keep", help="keep the runs in this directory (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.stages, args.images = 2, 2, args.images or 3000
    overrides = schedule_overrides(args.epochs, args.stages, args.images) + args.set
    with tempfile.TemporaryDirectory(prefix="bench_search-") as scratch:
        root = Path(args.keep or scratch)
        root.mkdir(parents=True, exist_ok=True)
        print(f"[bench] {Path(args.config).name}: {args.epochs} epochs, modes {args.modes}, np {args.ranks}; "
              f"runs in {root}", flush=True)
        plain, results = 0.0, {}
        for repeat in range(args.repeats):  # interleaved: a load that comes and goes hits every run alike
            run("law_hpc.train", root / f"plain-{repeat}", args.config, overrides + ["train.method=uniform"])
            plain = max(plain, plain_samples_per_second(root / f"plain-{repeat}"))
            for ranks in args.ranks:
                for mode in args.modes:
                    run_dir = root / f"search-{mode}-np{ranks}-{repeat}"
                    run("law_hpc.search", run_dir, args.config, overrides + [f"search.pair_mode={mode}"], ranks)
                    figures, best = search_figures(run_dir), results.get((mode, ranks))
                    if best is None or figures["weighted"] > best["weighted"]:
                        results[(mode, ranks)] = figures
        results = dict(sorted(results.items(), key=lambda item: (args.modes.index(item[0][0]), item[0][1])))
        print(table(plain, results, args.ranks), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
