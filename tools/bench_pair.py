#!/usr/bin/env python
"""Threads vs sequential for the target/reference pair, side by side in one run.

    python tools/bench_pair.py [--config configs/fmnist_noisy_mlp.yaml] [--iterations 60] [--threads 1 2]

Runs the default config's pair on real batches, weighted (features + K on the target), with torch
limited to each --threads value (1 = what each of 2 ranks gets on a 2-core node).
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from law_hpc.registry import load_checked_config  # noqa: E402
from law_hpc.data import build_data  # noqa: E402
from law_hpc.engine.pair import ClassifierPair  # noqa: E402
from law_hpc.law.weighting import WeightingRule  # noqa: E402
from law_hpc.models import model_from_config  # noqa: E402


def samples_per_second(cfg, data, mode: str, iterations: int) -> float:
    factory = lambda: model_from_config(cfg.model, data.num_classes, data.in_channels, data.image_size)
    pair = ClassifierPair.create(factory, 0, torch.device("cpu"), 0.05, 0.9, 2e-5, mode)
    features = WeightingRule(torch.zeros(data.num_classes))
    action = torch.tensor([-0.5, 0.1, 0.1, 0.0, 0.0])
    batches = data.train.iterate(0)
    pair.train_stage(batches, range(5), lambda s: 0.05, action, features)  # warm-up
    started = time.perf_counter()
    stats = pair.train_stage(batches, range(iterations), lambda s: 0.05, action, features)
    elapsed = time.perf_counter() - started
    pair.close()
    return stats.samples / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(Path(__file__).resolve().parent.parent / "configs/fmnist_noisy_mlp.yaml"))
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = load_checked_config(args.config)
    data = build_data(cfg.data, purpose="search", seed=0, rank=0, world_size=1, device=torch.device("cpu"))
    print("| torch threads | sequential samples/s | threads samples/s | threads / sequential |")
    print("| ---: | ---: | ---: | ---: |")
    for threads in args.threads:
        torch.set_num_threads(threads)
        results = {"sequential": [], "threads": []}
        for _ in range(args.repeats):  # interleaved, so drift hits both alike
            for mode in results:
                results[mode].append(samples_per_second(cfg, data, mode, args.iterations))
        seq, thr = max(results["sequential"]), max(results["threads"])
        print(f"| {threads} | {seq:,.0f} | {thr:,.0f} | {thr / seq:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
