#!/usr/bin/env python
"""What a learned policy costs a test-phase step: LAW's weighted step against uniform training, side by side.

    python tools/bench_weighting.py [--config fmnist_noisy_mlp] [--policy fmnist_noisy_mlp] [--iterations 200]

The same network, batches and lr for every row; torch on one thread (what each of 2 ranks gets on 2 cores).
Rows: uniform (ERM), LAW as shipped (computes only the features its policy uses) and LAW computing all four
features (as before the weighting path computed only what the policy uses). Repeats are interleaved so drift
hits every row alike; the best of the repeats is printed, with its ratio to uniform (goal: <= 1.05).
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from law_hpc.registry import load_checked_config  # noqa: E402
from law_hpc.data import build_data  # noqa: E402
from law_hpc.law.features import FEATURE_NAMES  # noqa: E402
from law_hpc.methods import build_method  # noqa: E402
from law_hpc.models import model_from_config  # noqa: E402


def samples_per_second(cfg, data, method_name: str, iterations: int, all_features: bool = False) -> float:
    """Samples/s of `iterations` test-phase steps of `method_name` (after 10 untimed ones)."""
    cfg.train.method = method_name
    method = build_method(cfg, data)
    if all_features:
        method.weighter.rule.terms = FEATURE_NAMES

    def model_factory(variant: int = 0):
        torch.manual_seed(variant)
        return model_from_config(cfg.model, data.num_classes, data.in_channels, data.image_size)

    def optimizer_factory(model, optimizer=None):
        return optimizer or torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum)

    method.setup(model_factory, optimizer_factory, torch.device("cpu"))
    batches = data.train.iterate(0)
    per_epoch = data.train.batches_per_epoch
    # the middle of the training: weighted stages (a warm-up stage weighs 1 without features)
    first = cfg.optim.epochs * per_epoch // 2
    for step in range(first, first + 10):
        method.train_step(next(batches), step / per_epoch, None)
    samples, started = 0, time.perf_counter()
    for step in range(first + 10, first + 10 + iterations):
        batch = next(batches)
        method.train_step(batch, step / per_epoch, None)
        samples += batch.labels.numel()
    return samples / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="fmnist_noisy_mlp")
    parser.add_argument("--policy", default="fmnist_noisy_mlp")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = Path(args.config)
    if not config.is_file():
        config = Path(__file__).resolve().parent.parent / "configs" / f"{args.config}.yaml"
    cfg = load_checked_config(config, [f"train.policy={args.policy}"])
    data = build_data(cfg.data, purpose="train", seed=0, rank=0, world_size=1, device=torch.device("cpu"))
    rows = {"uniform": ("uniform", False), "law (features the policy uses)": ("law", False),
            "law (all four features)": ("law", True)}
    results = {name: [] for name in rows}
    for _ in range(args.repeats):
        for name, (method, every) in rows.items():
            results[name].append(samples_per_second(cfg, data, method, args.iterations, every))
    uniform = max(results["uniform"])
    print(f"{config.name}, policy {args.policy}, batch {cfg.data.batch_size}, 1 thread, best of {args.repeats}")
    print("| step | samples/s | time / uniform |")
    print("| --- | ---: | ---: |")
    for name, values in results.items():
        print(f"| {name} | {max(values):,.0f} | {uniform / max(values):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
