"""python -m law_hpc.train: the test phase. Train one network on the full corrupted training set,
weighted by a learned LAW policy or by a peer method, and log per-epoch test accuracy.

    python -m law_hpc.train --config FILE --run-dir DIR --policy SEARCH_DIR/policy.h5 [--set model.name=...]
    horovodrun -np 4 python -m law_hpc.train --config FILE --run-dir DIR --method coteaching

Every method sees the same data order, augmentation and lr schedule (stage-based, as in the search).
Under horovodrun the training is data-parallel (DistributedOptimizer, lr x world size with warm-up): the
ranks hold one model, so rank 0 alone writes the checkpoint, and evaluation is sharded across the ranks.
Re-running with the same --run-dir resumes from the last complete epoch (or the mid-epoch checkpoint of a stop
request), and rewrites train.h5 from the checkpoint.
"""
from __future__ import annotations

if __name__ == "__main__":  # first, before torch: a stop request while the rank starts up is kept, not fatal
    from law_hpc.engine.preemption import StopFlag
    StopFlag.install()

import argparse
import dataclasses
import hashlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import Config
from .engine.evaluation import sharded_accuracy
from .engine.preemption import EXIT_PREEMPTED, Preemption
from .engine.resume import load_agreed
from .engine.schedule import StageSchedule
from .io.checkpoint import CheckpointStore
from .io.history import RowHistory, open_log, position_text
from .io.metrics import EpochRow, MetricsLog, train_layout
from .io.progress import Progress
from .io.rundir import logged_results
from .io.tensorboard import open_scalars
from .launch import add_config_options, run_attributes, run_entry_point
from .seeding import derive_seed, rng_states, set_rng_states


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
        self.val_batches_used = 0
        self.epoch, self.preemption = 0, Preemption(dist, cfg.stop_check_seconds, cfg.stop_check_iterations, "[law-train]")
        self.history = RowHistory(EpochRow)  # the rows of train.h5, which a resume rewrites from the checkpoint
        self.checkpoints = CheckpointStore(run_dir, 0)  # rank 0's, read by every rank: they hold one state
        results = logged_results(run_dir, "train.h5") if resumed and dist.is_root else ""
        position, state = (load_agreed(self.checkpoints, dist, run_dir, results, "[law-train]") if resumed
                           else None) or (None, None)
        self.interrupted: EpochProgress | None = None  # the epoch a mid-epoch checkpoint resumes
        if position is not None:
            self.load_state_dict(state)
            self.epoch = position[0] + (self.interrupted is None)
        val_iter = self._val_batches(self.val_batches_used)
        self.val_batch_fn = lambda: next(val_iter)
        self.scalars = open_scalars(cfg, run_dir, dist.is_root)
        self.log = self._open_log(position) if dist.is_root else None
        self.progress = Progress(cfg.optim.epochs, self.epoch)

    def state_dict(self) -> dict:
        return {"method": self.method.state_dict(), "log": self.history.state_dict(), "rng": rng_states(),
                "counters": {"val_batches_used": self.val_batches_used}}

    def load_state_dict(self, state: dict) -> None:
        self.method.load_state_dict(state["method"])
        self.history.load_state_dict(state["log"])
        set_rng_states(state["rng"])
        self.val_batches_used = state["counters"]["val_batches_used"]
        if "epoch" in state:  # a mid-epoch checkpoint
            self.interrupted = EpochProgress.from_state(state["epoch"], self.dist.device)
            for buffer, value in zip(_batchnorm_statistics(self.method), state["rank_buffers"][self.dist.rank]):
                buffer.copy_(value)

    def _open_log(self, position) -> MetricsLog:
        """train.h5: new, or written anew from the checkpoint's rows (a killed writer leaves it unopenable)."""
        if position is not None:
            print(f"[law-train] resumed {self.run_dir} {position_text(position, self.schedule.iterations_per_epoch, 'epoch')}; "
                  "train.h5 rewritten from the checkpoint", flush=True)
        attributes = run_attributes(self.cfg, self.dist, method=self.method.name, **self.method.log_attributes())
        log, _ = open_log(self.run_dir / "train.h5", train_layout(), attributes, self.data.report, EpochRow,
                          [self.history.state_dict()], self.schedule.iterations_per_epoch, events_of=None)
        return log

    def _val_batches(self, skip: int):
        """Clean validation minibatches of the training batch size, for the meta-learning peers (L2RW,
        MW-Net use a validation minibatch as large as the training one), endlessly; the first `skip` (those
        used before a resume) left out, so a resumed run goes on with the batches an uninterrupted one uses."""
        size = self.cfg.data.batch_size
        while True:
            count = 0
            for images, labels in self.data.val.batches():
                for start in range(0, len(labels), size):
                    count += 1
                    if skip > 0:
                        skip -= 1
                        continue
                    self.val_batches_used += 1
                    yield images[start:start + size], labels[start:start + size]
            skip %= max(count, 1)  # whole passes left to skip: none

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
        per_epoch = self.schedule.iterations_per_epoch
        start = self.interrupted.next_step if self.interrupted else self.epoch * per_epoch
        batches = self.data.train.iterate(derive_seed(self.cfg.seed, "train-data"), start_step=start)
        for epoch in range(self.epoch, self.cfg.optim.epochs):
            progress, self.interrupted = self.interrupted or EpochProgress(epoch * per_epoch), None
            if not self.train_epoch(batches, progress):
                self.checkpoint_mid_epoch(epoch, progress)
                return EXIT_PREEMPTED
            row = self.epoch_row(epoch, progress)
            self.check_ranks_agree(epoch)
            if self.dist.is_root:
                self.history.add(row)
                self.checkpoints.save((epoch, 0, per_epoch), self.state_dict(), {"epoch": epoch})
                self.log.append([row])
                self.report(row)
            if self.preemption.agreed():
                return EXIT_PREEMPTED
        return 0

    def train_epoch(self, batches, progress: "EpochProgress") -> bool:
        """The rest of an epoch from where `progress` stands; False when a stop was agreed before its end."""
        schedule, started = self.schedule, time.perf_counter()
        per_epoch = schedule.iterations_per_epoch
        try:
            for step in range(progress.next_step, progress.first_step + per_epoch):
                progress.lr = schedule.lr_at(step)
                self.method.set_lr(progress.lr)
                batch = next(batches)
                # epoch progress as a float: LAW maps it to its stage, the peers to their schedules
                out = self.method.train_step(batch, step / per_epoch, self.val_batch_fn)
                progress.add(out.loss, out.weights.float(), batch.labels.numel())
                if (step + 1) % schedule.iterations_per_stage == 0:
                    self.method.end_stage(lambda: self.accuracy(self.data.val_shard))
                if progress.done < per_epoch and self.preemption.poll():
                    return False
            return True
        finally:
            progress.seconds += time.perf_counter() - started

    def epoch_row(self, epoch: int, progress: "EpochProgress") -> EpochRow:
        """The epoch's row (test and validation accuracy are collectives; the rest is this rank's)."""
        weights = torch.cat(progress.weights)
        return EpochRow(epoch=epoch, lr=progress.lr, train_loss=float(progress.loss_sum) / progress.done,
                        test_acc=self.accuracy(self.data.test), val_acc=self.accuracy(self.data.val_shard),
                        weight_mean=float(weights.mean()), weight_std=float(weights.std(unbiased=False)),
                        seconds=progress.seconds, samples_per_second=progress.samples * self.dist.size / progress.seconds)

    def checkpoint_mid_epoch(self, epoch: int, progress: "EpochProgress") -> None:
        """A stop agreed inside an epoch: rank 0 checkpoints the epoch as it stands, with every rank's BatchNorm
        statistics (the ranks average them only before evaluating); then every rank exits for requeue."""
        buffers = self.dist.allgather_object(batchnorm_buffers(self.method))
        if self.dist.is_root:
            self.checkpoints.save((epoch, 0, progress.done), {**self.state_dict(), "epoch": progress.state_dict(),
                                                               "rank_buffers": buffers}, {"epoch": epoch})
        self.preemption.stopped_mid_stage(f"in epoch {epoch + 1} at iteration {progress.done}/"
                                          f"{self.schedule.iterations_per_epoch}")

    def report(self, row: EpochRow) -> None:
        """Rank 0's line (and TensorBoard scalars) of an epoch."""
        if self.scalars is not None:
            self.scalars.add("train", {name: value for name, value in dataclasses.asdict(row).items()
                                       if name != "epoch"}, row.epoch + 1)
        print(f"[law-train] {self.progress.stamp()} {self.method.name} epoch {row.epoch + 1}/{self.cfg.optim.epochs} "
              f"lr {row.lr:.4g} loss {row.train_loss:.4f} test {row.test_acc:.4f} val {row.val_acc:.4f} "
              f"w {row.weight_mean:.3f}±{row.weight_std:.3f} {row.samples_per_second:,.0f} samples/s "
              f"{row.seconds:.1f}s | {self.progress.suffix(row.epoch + 1)}", flush=True)

    def close(self, status: str | None = None) -> None:
        """Close rank 0's files; train.h5 records `status` (how the run ended)."""
        if self.log is not None:
            self.log.close(status)
        if self.scalars is not None:
            self.scalars.close()


@dataclass
class EpochProgress:
    """Where an epoch's training stands: iterations done from `first_step`, and the sums of its row."""

    first_step: int
    done: int = 0
    loss_sum: torch.Tensor | float = 0.0
    weights: list = field(default_factory=list)
    samples: int = 0
    seconds: float = 0.0
    lr: float = 0.0

    @property
    def next_step(self) -> int:
        return self.first_step + self.done

    def add(self, loss: torch.Tensor, weights: torch.Tensor, samples: int) -> None:
        """One iteration: its loss, the weights the method gave its samples, the batch size."""
        self.done += 1
        self.loss_sum = self.loss_sum + loss
        self.weights.append(weights)
        self.samples += samples

    def state_dict(self) -> dict:
        return {"first_step": self.first_step, "done": self.done, "loss_sum": torch.as_tensor(self.loss_sum).cpu(),
                "weights": torch.cat(self.weights).cpu(), "samples": self.samples, "seconds": self.seconds, "lr": self.lr}

    @classmethod
    def from_state(cls, state: dict, device) -> "EpochProgress":
        return cls(state["first_step"], state["done"], state["loss_sum"].to(device), [state["weights"].to(device)],
                   state["samples"], state["seconds"], state["lr"])


def batchnorm_buffers(method) -> list[torch.Tensor]:
    """This rank's BatchNorm running statistics, in a fixed order, of every network of `method`."""
    return [buffer.detach().cpu().clone() for buffer in _batchnorm_statistics(method)]


def _batchnorm_statistics(method):
    for obj in method.stateful().values():
        if isinstance(obj, torch.nn.Module):
            for layer in obj.modules():
                if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm) and layer.running_mean is not None:
                    yield from (layer.running_mean, layer.running_var)


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
