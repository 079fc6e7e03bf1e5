"""python -m law_hpc.train: the test phase. Train one network on the full corrupted training set,
weighted by a learned LAW policy or by a peer method, and log per-epoch test accuracy.

    python -m law_hpc.train --config FILE --run-dir DIR --policy SEARCH_DIR/policy.h5 [--set model.name=...]
    horovodrun -np 4 python -m law_hpc.train --config FILE --run-dir DIR --method coteaching

Every method sees the same data order, augmentation and lr schedule (stage-based, as in the search).
Under horovodrun the training is data-parallel (DistributedOptimizer, lr x world size with warm-up): the
ranks hold one model, so rank 0 alone writes the checkpoint, and evaluation is sharded across the ranks.
Re-running with the same --run-dir resumes from the last complete epoch.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
import time
from pathlib import Path

import torch

from .config import Config
from .engine.evaluation import sharded_accuracy
from .engine.preemption import EXIT_PREEMPTED, StopFlag
from .engine.resume import agree_on_resume
from .engine.schedule import StageSchedule
from .io.checkpoint import CheckpointStore
from .io.metrics import EpochRow, MetricsLog, train_layout
from .io.progress import Progress
from .io.tensorboard import open_scalars
from .launch import add_config_options, run_attributes, run_entry_point
from .seeding import derive_seed


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m law_hpc.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config (default: configs/fmnist_noisy_mlp.yaml)")
    parser.add_argument("--run-dir", help="output directory; an existing one is resumed (default: runs/train-<time>)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--policy", help="a search's policy.h5: weight samples with the learned policy")
    source.add_argument("--method", help="a peer method instead (uniform, focal, class_balanced, self_paced, "
                        "coteaching, l2rw, mwnet, oracle); default train.method")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--force", action="store_true", help="resume a run directory even if its config differs")
    return add_config_options(parser).parse_args(argv)


class Training:
    """One test-phase training: data, method, schedule, log and checkpoints of this rank."""

    def __init__(self, cfg: Config, dist, run_dir: Path, resumed: bool):
        from .data import Screening, build_data
        from .methods import build_method
        from .models import model_from_config

        self.cfg, self.dist, self.run_dir = cfg, dist, run_dir
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.data = data = build_data(cfg.data, purpose="train", seed=cfg.seed, rank=dist.rank,
                                      world_size=dist.size, device=dist.device,
                                      screening=Screening(run_dir / "screened.h5", dist.rank, dist.size,
                                                          dist.allgather_object))
        data_parallel = dist.size > 1 and cfg.train.scale_lr  # lr x ranks, with at least one epoch of warm-up
        self.schedule = StageSchedule.from_config(
            cfg, iterations_per_epoch=data.train.batches_per_epoch, epochs=cfg.optim.epochs,
            lr_scale=dist.size if cfg.train.scale_lr else 1,
            warmup_epochs=max(cfg.optim.warmup_epochs, 1.0) if data_parallel else cfg.optim.warmup_epochs)
        self.method = build_method(cfg, data)

        def model_factory(variant: int = 0):
            with torch.random.fork_rng(devices=[]):  # the same initialisation for every method of a seed
                torch.manual_seed(derive_seed(cfg.seed, "train-init", variant))
                return model_from_config(cfg.model, data.num_classes, data.in_channels, data.image_size)

        def optimizer_factory(model, optimizer=None):
            optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=self.schedule.base_lr,
                                                     momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)
            dist.broadcast_state(model)
            return dist.distributed_optimizer(optimizer, model)

        self.method.setup(model_factory, optimizer_factory, dist.device)
        val_iter = self._val_batches()
        self.val_batch_fn = lambda: next(val_iter)
        self.epoch, self.stop = 0, StopFlag()
        self.checkpoints = CheckpointStore(run_dir, 0)  # rank 0's, read by every rank: they hold one state
        position = agree_on_resume(self.checkpoints, dist, "[law-train]") if resumed else None
        if position is not None:
            self.method.load_state_dict(self.checkpoints.load(position)["method"])
            self.epoch = position[0] + 1
        self.scalars = open_scalars(cfg, run_dir, dist.is_root)
        self.log = self._open_log() if dist.is_root else None
        self.progress = Progress(cfg.optim.epochs, self.epoch)

    def _open_log(self) -> MetricsLog:
        path = self.run_dir / "train.h5"
        if self.epoch == 0:
            attributes = run_attributes(self.cfg, self.dist, method=self.method.name, **self.method.log_attributes())
            return MetricsLog.create(path, train_layout(), attributes, self.data.report)
        print(f"[law-train] resumed {self.run_dir} after epoch {self.epoch}", flush=True)
        return MetricsLog.reopen(path, train_layout(), self.epoch)

    def _val_batches(self):
        """Clean validation minibatches of the training batch size, for the meta-learning peers (L2RW,
        MW-Net use a validation minibatch as large as the training one)."""
        size = self.cfg.data.batch_size
        while True:
            for images, labels in self.data.val.batches():
                for start in range(0, len(labels), size):
                    yield images[start:start + size], labels[start:start + size]

    def accuracy(self, shard) -> float:
        """Top-1 accuracy of the method's model over a set of which every rank evaluates its `shard` (a
        collective: every rank calls it at the same point)."""
        model = self.method.eval_model()
        self.dist.average_batchnorm_statistics(model)
        return sharded_accuracy(model, shard, self.dist.allgather_object)

    def check_ranks_agree(self, epoch: int) -> None:
        """Rank 0's checkpoint stands for every rank only if they hold one state: compare digests (a warning,
        not silence, if a method keeps per-rank state)."""
        if self.dist.size == 1:
            return
        for obj in self.method.stateful().values():
            if isinstance(obj, torch.nn.Module):
                self.dist.average_batchnorm_statistics(obj)
        digest = hashlib.sha256()
        for tensor in _tensors(self.method.state_dict()):
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        digests = self.dist.allgather_object(digest.hexdigest())
        if self.dist.is_root and len(set(digests)) > 1:
            print(f"[law-train] WARNING: after epoch {epoch + 1} the ranks hold different {self.method.name} state; "
                  "rank 0's checkpoint will not resume the other ranks exactly", flush=True)

    def run(self) -> int:
        cfg, schedule = self.cfg, self.schedule
        per_epoch = schedule.iterations_per_epoch
        batches = self.data.train.iterate(derive_seed(cfg.seed, "train-data"), start_step=self.epoch * per_epoch)
        for epoch in range(self.epoch, cfg.optim.epochs):
            started = time.perf_counter()
            loss_sum, weights, samples = 0.0, [], 0
            for step in range(epoch * per_epoch, (epoch + 1) * per_epoch):
                lr = schedule.lr_at(step)
                self.method.set_lr(lr)
                batch = next(batches)
                # epoch progress as a float: LAW maps it to its stage, the peers to their schedules
                out = self.method.train_step(batch, step / per_epoch, self.val_batch_fn)
                loss_sum = loss_sum + out.loss
                weights.append(out.weights.float())
                samples += batch.labels.numel()
                if (step + 1) % schedule.iterations_per_stage == 0:
                    self.method.end_stage(lambda: self.accuracy(self.data.val_shard))
            seconds = time.perf_counter() - started
            all_weights = torch.cat(weights)
            row = EpochRow(epoch=epoch, lr=lr, train_loss=float(loss_sum) / per_epoch,
                           test_acc=self.accuracy(self.data.test), val_acc=self.accuracy(self.data.val_shard),
                           weight_mean=float(all_weights.mean()), weight_std=float(all_weights.std(unbiased=False)),
                           seconds=seconds, samples_per_second=samples * self.dist.size / seconds)
            self.check_ranks_agree(epoch)
            if self.dist.is_root:
                self.checkpoints.save((epoch, 0), {"method": self.method.state_dict()}, {"epoch": epoch})
                self.log.append([row])
                if self.scalars is not None:
                    self.scalars.add("train", {name: value for name, value in dataclasses.asdict(row).items()
                                               if name != "epoch"}, epoch + 1)
                print(f"[law-train] {self.progress.stamp()} {self.method.name} epoch {epoch + 1}/{cfg.optim.epochs} "
                      f"lr {row.lr:.4g} loss {row.train_loss:.4f} test {row.test_acc:.4f} val {row.val_acc:.4f} "
                      f"w {row.weight_mean:.3f}±{row.weight_std:.3f} {row.samples_per_second:,.0f} samples/s "
                      f"{row.seconds:.1f}s | {self.progress.suffix(epoch + 1)}", flush=True)
            if self.dist.any_flag(self.stop.requested):
                return EXIT_PREEMPTED
        return 0

    def close(self, status: str | None = None) -> None:
        """Close rank 0's files; train.h5 records `status` (how the run ended)."""
        if self.log is not None:
            self.log.close(status)
        if self.scalars is not None:
            self.scalars.close()


def _tensors(state):
    """Every tensor of a nested state dict, in a fixed order."""
    if isinstance(state, torch.Tensor):
        yield state
    elif isinstance(state, dict):
        for key in sorted(state, key=str):
            yield from _tensors(state[key])
    elif isinstance(state, (list, tuple)):
        for item in state:
            yield from _tensors(item)


def with_method_of(args):
    """--policy FILE means train.method=law with that policy; --method NAME sets train.method."""
    def adjust(cfg: Config) -> Config:
        if args.policy:
            return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, method="law", policy=args.policy))
        if args.method:
            return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, method=args.method))
        return cfg
    return adjust


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_entry_point(args, "train", Training, adjust=with_method_of(args))


if __name__ == "__main__":
    sys.exit(main())
