"""python -m law_hpc.train: the test phase. Train one network on the full corrupted training set,
weighted by a learned LAW policy or by a peer method, and log per-epoch test accuracy.

    python -m law_hpc.train --config FILE --run-dir DIR --policy SEARCH_DIR/policy.h5 [--set model.name=...]
    horovodrun -np 4 python -m law_hpc.train --config FILE --run-dir DIR --method coteaching

Every method sees the same data order, augmentation and lr schedule (stage-based, as in the search).
Under horovodrun the training is data-parallel (DistributedOptimizer, lr x world size with warm-up).
Re-running with the same --run-dir resumes from the last complete epoch.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import dist as distributed
from .config import Config, to_yaml
from .engine.law_method import LawPolicyMethod, UniformMethod
from .engine.preemption import EXIT_PREEMPTED, StopFlag
from .io.checkpoint import checkpoint_dir, checkpoint_path, complete_positions, read_checkpoint, save_checkpoint
from .io.metrics import MetricsLog, git_commit
from .launch import EXIT_BAD_INPUT, load_config_or_report, run_job
from .law.reward import StageSchedule
from .seeding import derive_seed

EPOCH_COLUMNS = {"epoch": np.int64, "lr": np.float64, "train_loss": np.float64, "test_acc": np.float64,
                 "val_acc": np.float64, "weight_mean": np.float64, "weight_std": np.float64,
                 "seconds": np.float64, "samples_per_second": np.float64}
LAYOUT = {f"epochs/{name}": (dtype, ()) for name, dtype in EPOCH_COLUMNS.items()}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m law_hpc.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config (default: configs/fmnist_noisy.yaml)")
    parser.add_argument("--run-dir", help="output directory; an existing one is resumed (default: runs/train-<time>)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--policy", help="a search's policy.h5: weight samples with the learned policy")
    source.add_argument("--method", help="a peer method instead (uniform, focal, class_balanced, self_paced, "
                        "coteaching, l2rw, mwnet, oracle); default train.method")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--force", action="store_true", help="resume a run directory even if its config differs")
    return parser.parse_args(argv)


def create_method(name: str, cfg: Config, clean_mask: np.ndarray):
    """A weighting method by name: uniform here, the peers from law_hpc.baselines."""
    if name == "uniform":
        return UniformMethod()
    from .baselines import create_method as create_baseline
    t = cfg.train
    options = {"focal": {"gamma": t.focal_gamma}, "class_balanced": {"beta": t.class_balanced_beta},
               "coteaching": {"forget_rate": t.forget_rate, "forget_epochs": t.forget_epochs},
               "self_paced": {"start_fraction": t.self_paced_start}, "oracle": {"clean_mask": clean_mask}}
    return create_baseline(name, **options.get(name, {}))


class Training:
    """One test-phase training: data, method, schedule, log and checkpoints of this rank."""

    def __init__(self, cfg: Config, dist, run_dir: Path, method_name: str, policy: str | None, resumed: bool):
        from .data import build_data
        from .models import create_model

        self.cfg, self.dist, self.run_dir = cfg, dist, run_dir
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.data = build_data(cfg.data, purpose="train", seed=cfg.seed, rank=dist.rank, world_size=dist.size,
                               device=dist.device)
        per_epoch = self.data.train.batches_per_epoch
        lr = cfg.optim.lr * (dist.size if cfg.train.scale_lr else 1)
        self.schedule = StageSchedule(cfg.search.stages, 0, per_epoch, cfg.train.epochs, lr,
                                      tuple(cfg.optim.lr_decay_stages), cfg.optim.lr_decay,
                                      cfg.optim.warmup_epochs if dist.size == 1 or not cfg.train.scale_lr
                                      else max(cfg.optim.warmup_epochs, 1.0))
        self.method = LawPolicyMethod(policy) if policy else create_method(method_name, cfg, self.data.train_clean_mask)
        data = self.data

        def model_factory(variant: int = 0):
            with torch.random.fork_rng(devices=[]):  # the same initialisation for every method of a seed
                torch.manual_seed(derive_seed(cfg.seed, "train-init", variant))
                return create_model(cfg.model.name, data.num_classes, data.in_channels, data.image_size)

        def optimizer_factory(model):
            optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.optim.momentum,
                                        weight_decay=cfg.optim.weight_decay)
            dist.broadcast_state(model)
            return dist.distributed_optimizer(optimizer, model)

        self.method.setup(model_factory, optimizer_factory, data.num_classes, data.train_label_counts,
                          cfg.train.epochs, dist.device)
        val_iter = self._val_batches()
        self.val_batch_fn = lambda: next(val_iter)
        self.epoch, self.stop, self.log = 0, StopFlag(), None
        if resumed:
            self._resume()
        if dist.is_root:
            path = run_dir / "train.h5"
            if self.epoch == 0:
                attrs = {"config_yaml": to_yaml(cfg), "world_size": dist.size, "method": self.method.name,
                         "policy": str(policy or ""), "versions": distributed.package_versions(),
                         "git_commit": git_commit()}
                self.log = MetricsLog.create(path, LAYOUT, attrs, data.report)
            else:
                self.log = MetricsLog.reopen(path, LAYOUT, self.epoch)

    def _val_batches(self):
        """Clean validation minibatches of the training batch size, for the meta-learning peers (L2RW,
        MW-Net use a validation minibatch as large as the training one)."""
        size = self.cfg.data.batch_size
        while True:
            for images, labels in self.data.val.batches():
                for start in range(0, len(labels), size):
                    yield images[start:start + size], labels[start:start + size]

    def _resume(self) -> None:
        directory = checkpoint_dir(self.run_dir, self.dist.rank)
        everyone = self.dist.allgather_object(complete_positions(directory))  # [(epoch, 0), ...] per rank
        common = set(everyone[0]).intersection(*map(set, everyone[1:]))
        if not common:
            return
        state = read_checkpoint(checkpoint_path(directory, *max(common)))
        self.method.load_state_dict(state["torch"]["method"])
        self.epoch = max(common)[0] + 1
        if self.dist.is_root:
            print(f"[law-train] resumed {self.run_dir} after epoch {self.epoch}", flush=True)

    @torch.no_grad()
    def accuracy(self, eval_set) -> float:
        model = self.method.eval_model()
        model.eval()
        correct = total = 0
        for images, labels in eval_set.batches():
            correct += int((model(images).argmax(1) == labels).sum())
            total += labels.numel()
        return correct / max(total, 1)

    def run(self) -> int:
        cfg, schedule = self.cfg, self.schedule
        batches = self.data.train.iterate(derive_seed(cfg.seed, "train-data"), start_step=self.epoch * schedule.iterations_per_epoch)
        per_stage = schedule.iterations_per_stage
        for epoch in range(self.epoch, cfg.train.epochs):
            started = time.perf_counter()
            loss_sum, weights, samples = 0.0, [], 0
            for offset in range(schedule.iterations_per_epoch):
                step = epoch * schedule.iterations_per_epoch + offset
                lr = schedule.lr_at(min(step // per_stage, schedule.stages - 1), step)
                self.method.set_lr(lr)
                batch = next(batches)
                # epoch progress as a float: LAW maps it to its stage, the peers to their schedules
                out = self.method.train_step(batch.images, batch.labels, batch.index,
                                             step / schedule.iterations_per_epoch, step, self.val_batch_fn)
                loss_sum = loss_sum + out["loss"]
                weights.append(out["weights"].float())
                samples += batch.labels.numel()
                if (step + 1) % per_stage == 0 and hasattr(self.method, "end_stage"):
                    self.method.end_stage(self.accuracy(self.data.val))
            seconds = time.perf_counter() - started
            all_weights = torch.cat(weights)
            row = {"epoch": epoch, "lr": lr, "train_loss": float(loss_sum) / schedule.iterations_per_epoch,
                   "test_acc": self.accuracy(self.data.test), "val_acc": self.accuracy(self.data.val),
                   "weight_mean": float(all_weights.mean()), "weight_std": float(all_weights.std(unbiased=False)),
                   "seconds": seconds, "samples_per_second": samples * self.dist.size / seconds}
            save_checkpoint(checkpoint_dir(self.run_dir, self.dist.rank), epoch, 0, {},
                            {"method": self.method.state_dict()}, {"epoch": epoch})
            if self.dist.is_root:
                self.log.append([row])
                print(f"[law-train] {self.method.name} epoch {epoch + 1}/{cfg.train.epochs} lr {row['lr']:.4g} "
                      f"loss {row['train_loss']:.4f} test {row['test_acc']:.4f} val {row['val_acc']:.4f} "
                      f"w {row['weight_mean']:.3f}±{row['weight_std']:.3f} {row['samples_per_second']:,.0f} samples/s",
                      flush=True)
            if self.dist.any_flag(self.stop.requested):
                return EXIT_PREEMPTED
        return 0

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config_or_report(args)
    if cfg is None:
        return EXIT_BAD_INPUT
    method_name = args.method or cfg.train.method
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, method="law" if args.policy else method_name))
    return run_job(args, cfg, "train",
                   lambda dist, run_dir, resumed: Training(cfg, dist, run_dir, method_name, args.policy, resumed))


if __name__ == "__main__":
    sys.exit(main())
