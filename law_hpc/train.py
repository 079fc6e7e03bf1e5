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
import math
import sys

import torch

from .config import Config, override_keys, to_yaml
from .engine.evaluation import ShardedValidation, sharded_accuracy, sharded_losses
from .engine.preemption import EXIT_PREEMPTED
from .law.schedule import StageSchedule
from .engine.steps import StepProgress, run_steps
from .io.metrics import EpochRow, git_commit, train_layout
from .job import Job
from .launch import add_config_options, run_entry_point
from .methods import list_methods
from .methods.law import adopt_recipe
from .seeding import derive_seed, rng_states, set_rng_states


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m law_hpc.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config (default: configs/fmnist_noisy_mlp.yaml)")
    parser.add_argument("--run-dir", help="output directory; an existing one is resumed (default: runs/train-<time>)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--policy", help="a search's policy.h5: weight samples with the learned policy")
    source.add_argument("--method", help=f"a registered method instead ({', '.join(list_methods())}); default "
                        "train.method")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--force", action="store_true", help="resume a run directory even if its config differs")
    parser.add_argument("--list-policies", action="store_true",
                        help="list the shipped policies (--policy NAME) with what they were searched on, and exit")
    return add_config_options(parser).parse_args(argv)


class Training(Job):
    """One test-phase training: a weighting method on this rank's shard of the training data."""

    purpose, log_name, row_type, prefix, unit = "train", "train.h5", EpochRow, "[law-train]", "epoch"
    shared_checkpoint = True  # data-parallel ranks hold one model: rank 0's checkpoint stands for every rank

    def build(self) -> None:
        from .methods import build_method
        from .models import model_from_config

        cfg, data, dist = self.cfg, self.data, self.dist
        data_parallel = dist.size > 1 and cfg.train.scale_lr  # lr x ranks, with at least one epoch of warm-up
        self.schedule = StageSchedule.from_config(
            cfg, iterations_per_epoch=data.train.batches_per_epoch, epochs=cfg.optim.epochs,
            lr_scale=dist.size if cfg.train.scale_lr else 1,
            warmup_epochs=max(cfg.optim.warmup_epochs, 1.0) if data_parallel else cfg.optim.warmup_epochs)
        self.iterations_per_unit = self.schedule.iterations_per_epoch
        self.method = build_method(cfg, data)
        self.method.allgather = dist.allgather_object  # per-sample state (ELR's targets) alike on every rank
        self.method.schedule = self.schedule

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
        self.validation_batches = ValidationBatches(data.val, cfg.data.batch_size)
        self.validation = ShardedValidation(data.val_shard, dist.allgather_object, dist.average_batchnorm_statistics)
        self.interrupted: EpochProgress | None = None  # the epoch a mid-epoch checkpoint resumes
        self.calibrated: torch.nn.Module | None = None  # train.calibrate's model, from the last epoch's end
        self.calibration_note = ""

    # --- the job's parts -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"method": self.method.state_dict(), "log": self.history.state_dict(), "rng": rng_states(),
                "counters": {"val_batches_used": self.validation_batches.used}}

    def load_state_dict(self, state: dict) -> None:
        self.method.load_state_dict(state["method"])
        self.history.load_state_dict(state["log"])
        set_rng_states(state["rng"])
        self.validation_batches.skip(state["counters"]["val_batches_used"])
        if "epoch" in state:  # a mid-epoch checkpoint
            self.interrupted = EpochProgress.from_state(state["epoch"], self.schedule.iterations_per_epoch,
                                                        self.dist.device)
            for buffer, value in zip(_batchnorm_statistics(self.method), state["rank_buffers"][self.dist.rank]):
                buffer.copy_(value)

    @property
    def epochs_done(self) -> int:
        """Complete epochs (each has its row): where the job goes on."""
        return len(self.history.rows)

    def progress_units(self) -> tuple[int, int]:
        return self.cfg.optim.epochs, self.epochs_done

    def log_layout(self) -> dict:
        return train_layout()

    def log_attributes(self) -> dict:
        return {"method": self.method.name, **self.method.log_attributes()}

    # --- training ------------------------------------------------------------------------------------
    def accuracy(self, shard, model=None) -> float:
        """Top-1 accuracy of `model` (default: the method's evaluated model) over a set of which every rank
        evaluates its `shard` (a collective: every rank calls it at the same point)."""
        if shard is None:  # a folder without a test set
            return float("nan")
        model = self.evaluated_model() if model is None else model
        self.dist.average_batchnorm_statistics(model)
        return sharded_accuracy(model, shard, self.dist.allgather_object)

    def evaluated_model(self) -> torch.nn.Module:
        """What is evaluated and exported: the method's model, calibrated once train.calibrate has chosen a map."""
        return self.calibrated if self.calibrated is not None else self.method.eval_model()

    def calibrate(self) -> float:
        """train.calibrate at the last epoch's end (a collective): the map of models/calibration.py chosen by
        5-fold cross-validation on the whole validation split (gathered in rank order; rank 0 fits, every rank
        applies its map); the validation accuracy it gives back is the chosen kind's cross-validated one."""
        from .models.calibration import FOLDS, Calibrated, calibrate, log_probabilities_of
        model = self.method.eval_model()
        self.dist.average_batchnorm_statistics(model)
        shards = self.dist.allgather_object(log_probabilities_of(model, self.data.val_shard))
        log_probabilities, labels = (torch.cat([shard[part] for shard in shards]) for part in (0, 1))
        chosen = None
        if self.dist.is_root:
            calibrated, kind, accuracies = calibrate(model, log_probabilities, labels)
            chosen = (kind, calibrated.parameters_state() if kind != "none" else None, accuracies)
        kind, state, accuracies = self.dist.allgather_object(chosen)[0]
        if state:
            self.calibrated = Calibrated(model, state["log_temperature"], state["matrix"], state["bias"], kind=kind)
        self.calibration_note = (f"calibration: {kind} (validation, {len(labels)} images in {FOLDS} folds: "
                                 + ", ".join(f"{name} {accuracy:.4f}" for name, accuracy in accuracies.items()) + ")")
        return accuracies[kind]

    def validation_losses(self, loss_fn) -> torch.Tensor:
        """[N] per-sample `loss_fn` of the method's trained model on the whole validation set, the same on every rank
        (a collective)."""
        return sharded_losses(self.method.model, self.data.val_shard, loss_fn, self.dist.allgather_object)

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
        if len(set(self.dist.allgather_object(digest.hexdigest()))) > 1:
            self.console.warning(f"after epoch {epoch + 1} the ranks hold different {self.method.name} state; rank "
                                 "0's checkpoint will not resume the other ranks exactly")

    def run(self) -> int:
        per_epoch, first_epoch = self.schedule.iterations_per_epoch, self.epochs_done
        start = self.interrupted.next_step if self.interrupted else first_epoch * per_epoch
        batches = self.data.train.iterate(derive_seed(self.cfg.seed, "train-data"), start_step=start)
        for epoch in range(first_epoch, self.cfg.optim.epochs):
            progress, self.interrupted = self.interrupted or EpochProgress(self.schedule.epoch_steps(epoch)), None
            if not self.train_epoch(batches, progress):
                self.checkpoint_mid_epoch(epoch, progress)
                return EXIT_PREEMPTED
            row = self.epoch_row(epoch, progress)
            self.method.pool_ranks()
            self.check_ranks_agree(epoch)
            self.history.add(row)
            self.save_checkpoint((epoch, 0, per_epoch), self.state_dict())
            if self.dist.is_root:
                self.log.append([row])
                self.report(row)
                self.export_model(row)
            if self.preemption.agreed():
                return EXIT_PREEMPTED
        if self.dist.is_root:
            best, last = max(self.history.rows, key=lambda r: r.val_acc), self.history.rows[-1]
            self.console.info(f"done in {self.progress.elapsed()}: {self.run_dir / 'model.pt'} (epoch "
                              f"{last.epoch + 1}, validation {last.val_acc:.4f}{_test_text(last)}"
                              f"{_note_text(self.note())}); "
                              f"{self.run_dir / 'model_best.pt'} (epoch {best.epoch + 1}, best validation "
                              f"{best.val_acc:.4f}{_test_text(best)}); law_hpc.models.load(path) gives either back")
        return 0

    def export_model(self, row: EpochRow) -> None:
        """model.pt after every epoch, model_best.pt when the validation accuracy is the best so far (rank 0)."""
        from .models import model_options
        from .models.files import save_model_file

        about = dict(name=self.cfg.model.name, options=model_options(self.cfg.model), num_classes=self.data.num_classes,
                     in_channels=self.data.in_channels, image_size=self.data.image_size, classes=self.data.classes,
                     mean=list(self.data.mean), std=list(self.data.std), method=self.method.name,
                     policy=self.cfg.train.policy if self.method.name == "law" else "", epoch=row.epoch + 1,
                     val_acc=row.val_acc, test_acc=row.test_acc, note=self.note(),
                     config_yaml=to_yaml(self.cfg), git_commit=git_commit())
        model = self.evaluated_model()
        save_model_file(self.run_dir / "model.pt", model, **about)
        if row.val_acc >= max(r.val_acc for r in self.history.rows):
            save_model_file(self.run_dir / "model_best.pt", model, **about)

    def note(self) -> str:
        """What the evaluated model is, beyond the method's network: the guard's pick, the calibration map."""
        return "; ".join(part for part in (self.method.status(), self.calibration_note) if part)

    def train_epoch(self, batches, progress: "EpochProgress") -> bool:
        """The rest of an epoch from where `progress` stands; False when a stop was agreed before its end."""
        schedule = self.schedule

        def one_step(step: int) -> None:
            progress.lr = schedule.lr_at(step)
            self.method.set_lr(progress.lr)
            batch = next(batches)
            # epoch progress as a float: LAW maps it to its stage, the peers to their schedules
            out = self.method.train_step(batch, step / schedule.iterations_per_epoch, self.validation_batches.next)
            progress.add(out.loss, out.weights.float(), batch.labels.numel())
            if (step + 1) % schedule.iterations_per_stage == 0:
                self.method.end_stage(lambda: self.accuracy(self.data.val_shard, self.method.model),
                                      self.validation_losses)
        return run_steps(progress, one_step, self.preemption.poll)

    def epoch_row(self, epoch: int, progress: "EpochProgress") -> EpochRow:
        """The epoch's row (test and validation accuracy are collectives; the rest is this rank's)."""
        weights = torch.cat(progress.weights)
        val_acc = self.method.choose_eval_model(self.validation)
        if val_acc is None:
            val_acc = self.accuracy(self.data.val_shard)
        if self.cfg.train.calibrate and epoch == self.cfg.optim.epochs - 1:
            val_acc = self.calibrate()
        return EpochRow(epoch=epoch, lr=progress.lr, train_loss=float(progress.loss_sum) / progress.done,
                        test_acc=self.accuracy(self.data.test), val_acc=val_acc,
                        weight_mean=float(weights.mean()), weight_std=float(weights.std(unbiased=False)),
                        seconds=progress.seconds, samples_per_second=progress.samples * self.dist.size / progress.seconds)

    def checkpoint_mid_epoch(self, epoch: int, progress: "EpochProgress") -> None:
        """A stop agreed inside an epoch: rank 0 checkpoints the epoch as it stands, with every rank's BatchNorm
        statistics (the ranks average them only before evaluating); then every rank exits for requeue."""
        self.method.pool_ranks()
        buffers = self.dist.allgather_object(batchnorm_buffers(self.method))
        self.stop_mid_unit((epoch, 0, progress.done), {**self.state_dict(), "epoch": progress.state_dict(),
                                                       "rank_buffers": buffers},
                           f"in epoch {epoch + 1} at iteration {progress.done}/{self.schedule.iterations_per_epoch}")

    def report(self, row: EpochRow) -> None:
        """Rank 0's line (and TensorBoard scalars) of an epoch."""
        if self.scalars is not None:
            self.scalars.add("train", {name: value for name, value in dataclasses.asdict(row).items()
                                       if name != "epoch"}, row.epoch + 1)
        self.console.info(f"{self.progress.stamp()} {self.method.name} epoch {row.epoch + 1}/{self.cfg.optim.epochs} "
                          f"lr {row.lr:.4g} loss {row.train_loss:.4f} test {row.test_acc:.4f} val {row.val_acc:.4f} "
                          f"w {row.weight_mean:.3f}±{row.weight_std:.3f} {row.samples_per_second:,.0f} samples/s "
                          f"{row.seconds:.1f}s{_note_text(self.note())} | "
                          f"{self.progress.suffix(row.epoch + 1)}")


def _note_text(note: str) -> str:
    return f" ({note})" if note else ""


def _test_text(row: EpochRow) -> str:
    """", test 0.8123" where there is a test set."""
    return "" if math.isnan(row.test_acc) else f", test {row.test_acc:.4f}"


class ValidationBatches:
    """Clean validation minibatches of the training batch size, for the meta-learning peers (L2RW and MW-Net use
    a validation minibatch as large as the training one), endlessly; `used` counts them, so a resumed run skips
    those used before it and goes on with the batches an uninterrupted one uses."""

    def __init__(self, val_set, batch_size: int):
        self.val_set, self.batch_size, self.used = val_set, batch_size, 0
        self._skip, self._stream = 0, None

    def skip(self, count: int) -> None:
        """Continue after the first `count` minibatches (a resume)."""
        self._skip = self.used = count

    def next(self):
        if self._stream is None:
            self._stream = self._batches()
        return next(self._stream)

    def _batches(self):
        skip = self._skip
        while True:
            count = 0
            for images, labels in self.val_set.batches():
                for start in range(0, len(labels), self.batch_size):
                    count += 1
                    if skip > 0:
                        skip -= 1
                        continue
                    self.used += 1
                    yield images[start:start + self.batch_size], labels[start:start + self.batch_size]
            skip %= max(count, 1)  # whole passes left to skip: none


class EpochProgress(StepProgress):
    """Where an epoch's training stands: iterations done of its `steps`, and the sums of its row."""

    def __init__(self, steps: range):
        super().__init__(steps)
        self.loss_sum: torch.Tensor | float = 0.0
        self.weights: list = []
        self.lr = 0.0

    def add(self, loss: torch.Tensor, weights: torch.Tensor, samples: int) -> None:
        """One iteration: its loss, the weights the method gave its samples, the batch size."""
        self.count(samples)
        self.loss_sum = self.loss_sum + loss
        self.weights.append(weights)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "first_step": self.steps.start, "loss_sum": torch.as_tensor(self.loss_sum).cpu(),
                "weights": torch.cat(self.weights).cpu(), "lr": self.lr}

    @classmethod
    def from_state(cls, state: dict, iterations_per_epoch: int, device) -> "EpochProgress":
        progress = cls(range(state["first_step"], state["first_step"] + iterations_per_epoch))
        progress.load_state_dict(state)
        progress.loss_sum, progress.weights = state["loss_sum"].to(device), [state["weights"].to(device)]
        progress.lr = state["lr"]
        return progress


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


def with_method_of(args, adopted: list[str]):
    """--policy FILE means train.method=law with that policy, on the policy's recipe (schedule, base loss,
    augmentation) where --set does not say otherwise (the keys it changed go into `adopted`); --method NAME sets
    train.method."""
    def adjust(cfg: Config) -> Config:
        if args.policy:
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, method="law", policy=args.policy))
        elif args.method:
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, method=args.method))
        if cfg.train.method == "law" and cfg.train.policy:
            cfg, adopted[:] = adopt_recipe(cfg, set(override_keys(args.set)))
        return cfg
    return adjust


def list_policies() -> int:
    """--list-policies: each shipped policy, what it was searched on, its validation gap."""
    from .io.policy_file import describe_policy, shipped_policies
    for name in shipped_policies():
        print(f"{name}: {describe_policy(name)}")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list_policies:
        return list_policies()
    adopted: list[str] = []

    def build(cfg, dist, run_dir, resumed):
        if adopted and dist.is_root:
            print(f"[law-train] the policy's recipe: {', '.join(adopted)}", flush=True)
        return Training(cfg, dist, run_dir, resumed)
    return run_entry_point(args, "train", build, adjust=with_method_of(args, adopted))


if __name__ == "__main__":
    sys.exit(main())
